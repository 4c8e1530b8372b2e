// Test support: the message of the exception an action throws.
#pragma once

#include <string>
#include <utility>

namespace circbuf::test {

// what() of the E that `action` throws, or "<no error>" if it throws nothing.
template <class E>
std::string ErrorOf(auto&& action) {
  try {
    std::forward<decltype(action)>(action)();
  } catch (E const& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace circbuf::test
