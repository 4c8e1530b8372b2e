// circbuf.ring:typed: typed channels over a ring. TypedWriter<T> publishes
// values of one Storable type T, TypedReader<T> reads them back; the ring
// records T's size, alignment and an id chosen by its users (TypeTag, see
// :layout), so a reader of another type is refused at attach with a message
// that names both. Each message is one T, byte for byte (sizeof(T) bytes).
//
// Thread safety: as Writer and Reader (one thread at a time per object).
module;

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

export module circbuf.ring:typed;

import circbuf.shm;
import :layout;
import :wrapper;
import :writer;
import :reader;

export namespace circbuf::CircularBuffer {

template <Storable T>
class TypedWriter {
 public:
  // Creates the ring (or attaches to it) as Writer does, recording T's tag;
  // throws std::invalid_argument if the ring records another type, and
  // std::length_error if sizeof(T) exceeds the ring's largest message.
  TypedWriter(Spec const& spec, std::uint64_t type_id, WriterOptions options = {})
      : writer_(spec, WithType(options, type_id)) {
    CheckFits(writer_);
  }

  inline void Write(T const& value) {
    writer_.Write(std::span<std::byte const>(reinterpret_cast<std::byte const*>(&value), sizeof(T)));
  }

  // Constructs the T in place in the ring (claim, construct, commit): no
  // copy. The constructor's stores are the Claim caveat (readers still never
  // deliver torn data). If it throws, nothing is published.
  // Claim and Commit directly, not through a ScopedClaim (whose generation
  // bookkeeping cost a third more than Write per message, bench_api); a
  // constructor that may throw is caught, and the claim aborted.
  template <class... Args>
  inline void Emplace(Args&&... args) {
    static_assert(alignof(T) <= kRecordAlignment, "Emplace: the ring aligns messages to 8 bytes");
    void* const slot = writer_.Claim(sizeof(T)).data();
    if constexpr (std::is_nothrow_constructible_v<T, Args&&...>) {
      ::new (slot) T(std::forward<Args>(args)...);
    } else {
      try {
        ::new (slot) T(std::forward<Args>(args)...);
      } catch (...) {
        writer_.Abort();
        throw;
      }
    }
    writer_.Commit(sizeof(T));
  }

  [[nodiscard]] inline Writer& Untyped() noexcept { return writer_; }
  [[nodiscard]] inline Writer const& Untyped() const noexcept { return writer_; }

 private:
  static WriterOptions WithType(WriterOptions options, std::uint64_t type_id) {
    options.type = TagOf<T>(type_id);
    return options;
  }
  static void CheckFits(IWrapper const& ring) {
    if (sizeof(T) > ring.MaxMessageSize()) {
      throw std::length_error("ring \"" + std::string(ring.GetSpec().Name()) + "\": a message type of " +
                              std::to_string(sizeof(T)) + " bytes does not fit; the ring's largest message is " +
                              std::to_string(ring.MaxMessageSize()) + " bytes");
    }
  }
  Writer writer_;
};

template <Storable T>
class TypedReader {
 public:
  // Attaches as Reader does; throws std::invalid_argument if the ring records
  // another type or none (its writer is untyped), naming both.
  TypedReader(Spec const& spec, std::uint64_t type_id, ReaderOptions options = {})
      : reader_(spec, WithType(options, type_id)) {}

  // The next value into `out`: kMessage, or kEmpty, kLapped (see
  // Reader::LastLoss), kCorrupt (also for a message that is not
  // sizeof(T) bytes: the ring's rules say one T per message). `out` is
  // changed only on kMessage, never left holding torn bytes.
  [[nodiscard]] inline Outcome Read(T& out) {
    alignas(T) std::byte copy[sizeof(T)];
    ReadResult const result = reader_.Receive(copy);
    if (result.outcome == Outcome::kMessage && result.size == sizeof(T)) [[likely]] {
      std::memcpy(static_cast<void*>(&out), copy, sizeof(T));
      return Outcome::kMessage;
    }
    return Checked(result);
  }

  // Zero-copy: fn(T const&) with the value where it lies in the ring; then
  // whether it was intact throughout: kMessage, or kLapped if the writer
  // overwrote it meanwhile (discard whatever fn derived from it). The
  // reference is shared memory the writer may be rewriting: the caveat of
  // Reader::ReadInPlace.
  template <class Fn>
  // NOLINTNEXTLINE(cppcoreguidelines-missing-std-forward): called through a pointer (InPlace), as an lvalue
  [[nodiscard]] inline Outcome ReadInPlace(Fn&& fn) {
    static_assert(alignof(T) <= kRecordAlignment, "ReadInPlace: the ring aligns messages to 8 bytes");
    InPlace<Fn> call{&fn, false};
    int const n = reader_.ReadInPlace(call);
    if (n > 0) return call.sized ? Outcome::kMessage : Outcome::kCorrupt;
    return Checked({ToOutcome(n), 0, reader_.LastLoss()});
  }

  // Up to `max` values to fn(T const&), each copied out and validated first
  // (Reader::Poll).
  template <class Fn>
  // NOLINTNEXTLINE(cppcoreguidelines-missing-std-forward): called once per message, so never moved from
  [[nodiscard]] inline PollResult Poll(Fn&& fn, std::size_t max) {
    Each<Fn> each{&fn, 0};
    PollResult result = reader_.Poll(each, max);
    if (each.wrong_size != 0 && result.stopped != Outcome::kCorrupt) result.stopped = Outcome::kCorrupt;
    return result;
  }

  [[nodiscard]] inline Reader& Untyped() noexcept { return reader_; }
  [[nodiscard]] inline Reader const& Untyped() const noexcept { return reader_; }

 private:
  // Function objects, not lambdas: g++-14 cannot write lambdas in inline
  // code of a module interface (docs/toolchain-notes.md).
  template <class Fn>
  struct InPlace {
    Fn* fn;
    bool sized;
    inline void operator()(std::span<std::byte const> m) {
      sized = m.size() == sizeof(T);
      if (sized) (*fn)(*std::launder(reinterpret_cast<T const*>(m.data())));
    }
  };
  template <class Fn>
  struct Each {
    Fn* fn;
    std::size_t wrong_size;
    inline void operator()(std::span<std::byte const> m) {
      if (m.size() != sizeof(T)) [[unlikely]] {
        ++wrong_size;
        return;
      }
      // Poll's buffer is private, validated, and aligned as operator new
      // aligns (the vector's storage): used as it is when that suffices.
      if constexpr (alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
        (*fn)(*std::launder(reinterpret_cast<T const*>(m.data())));
      } else {
        alignas(T) std::byte copy[sizeof(T)];
        std::memcpy(copy, m.data(), sizeof(T));
        (*fn)(*std::launder(reinterpret_cast<T const*>(copy)));
      }
    }
  };
  static ReaderOptions WithType(ReaderOptions options, std::uint64_t type_id) {
    options.type = TagOf<T>(type_id);
    return options;
  }
  static inline Outcome ToOutcome(int n) noexcept {
    switch (n) {
      case kEmpty: return Outcome::kEmpty;
      case kLapped: return Outcome::kLapped;
      case kBufferTooSmall: return Outcome::kBufferTooSmall;
      default: return Outcome::kCorrupt;
    }
  }
  // A message of another size (kMessage or kBufferTooSmall) breaks the
  // typed ring's rule: kCorrupt, and it is passed over.
  inline Outcome Checked(ReadResult result) {
    if (result.outcome == Outcome::kBufferTooSmall) {
      (void)reader_.Skip();
      return Outcome::kCorrupt;
    }
    return result.outcome == Outcome::kMessage ? Outcome::kCorrupt : result.outcome;
  }
  Reader reader_;
};

}  // namespace circbuf::CircularBuffer
