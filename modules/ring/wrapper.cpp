module;

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

#include "../detail/log.hpp"

module circbuf.ring;

namespace circbuf::CircularBuffer {

namespace wrapper_impl {

std::string Q(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string DataName(Spec const& spec) { return DataSegmentName(spec.Name()); }

void CheckCapacity(std::string_view name, std::uint64_t capacity) {
  if (capacity < kMinCapacity || capacity > kMaxCapacity) {
    throw std::length_error("ring " + Q(name) + ": capacity " + std::to_string(capacity) + " bytes: must be " +
                            std::to_string(kMinCapacity) + " .. " + std::to_string(kMaxCapacity));
  }
}

void InitState(std::span<std::byte> region, std::uint64_t capacity, TypeTag type) {
  auto* s = reinterpret_cast<State*>(region.data());
  s->type_size = type.size;
  s->type_align = type.align;
  s->type_id = type.id;
  s->version = kRingVersion;
  s->state_bytes = sizeof(State);
  s->capacity = capacity;
  s->chunk = capacity / kChunks;
  s->max_message = static_cast<std::uint32_t>(MaxMessageFor(capacity));
  s->tail = 0;
  s->latest = kNoRecord;
  s->limit = 0;
  for (auto& entry : s->index) entry = kNoRecord;
  s->writer_state = static_cast<std::uint32_t>(WriterState::kNone);
  std::atomic_ref<std::uint64_t>(s->magic).store(kRingMagic, std::memory_order_release);
}

// Empties a ring whose data segment is new (all zero) without moving any
// position backwards: tail and limit go to the next lap start at or after
// limit, nothing is committed (latest and index[] kNoRecord), and the
// sequence numbers continue. Each intermediate state passes Validate's test
// (tail <= limit <= tail + 2 capacity). Writer::Recover continues from there.
void ResetPositions(State& s) {
  std::uint64_t const capacity = s.capacity;
  std::uint64_t const limit = std::atomic_ref<std::uint64_t>(s.limit).load(std::memory_order_relaxed);
  std::uint64_t const fresh = (std::max<std::uint64_t>(limit, 1) + capacity - 1) / capacity * capacity;
  std::atomic_ref<std::uint64_t>(s.latest).store(kNoRecord, std::memory_order_relaxed);
  for (auto& entry : s.index) std::atomic_ref<std::uint64_t>(entry).store(kNoRecord, std::memory_order_relaxed);
  std::atomic_ref<std::uint64_t>(s.limit).store(fresh, std::memory_order_release);
  std::atomic_ref<std::uint64_t>(s.tail).store(fresh, std::memory_order_release);
}

}  // namespace wrapper_impl
using namespace wrapper_impl;

std::string DescribeType(TypeTag type) {
  if (type == TypeTag{}) return "untyped messages";
  char id[32];
  std::snprintf(id, sizeof id, "%#llx", static_cast<unsigned long long>(type.id));
  return "messages of " + std::to_string(type.size) + " bytes, alignment " + std::to_string(type.align) + ", type id " +
         id;
}

void BumpWake(std::uint32_t* word) noexcept {
  std::atomic_ref<std::uint32_t> wake(*word);
  std::uint32_t seen = wake.load(std::memory_order_relaxed);
  // [W5]: seq_cst, so that the bump is ordered after every store before it
  // (tail, writer_state, a reader's stop flag) for whoever reads the word.
  while (!wake.compare_exchange_weak(seen, (seen | kWakeArmed) + 1, std::memory_order_seq_cst,
                                     std::memory_order_relaxed)) {
  }
}

void FutexWake(std::uint32_t* word, int count) noexcept {
  ::syscall(SYS_futex, word, FUTEX_WAKE, count, nullptr, nullptr, 0);
}

Spec Spec::Make(std::string_view name, std::uint64_t capacity) {
  ValidateName(name, "ring");
  if (name.size() > kMaxRingNameLength) {
    throw std::invalid_argument("ring name " + Q(name) + ": too long (" + std::to_string(name.size()) +
                                " characters); at most " + std::to_string(kMaxRingNameLength) +
                                " (the data segment adds \".data\")");
  }
  Spec spec{};
  std::memcpy(spec.name, name.data(), name.size());
  if (capacity != 0) {
    CheckCapacity(name, capacity);
    capacity = (capacity + kCapacityAlignment - 1) / kCapacityAlignment * kCapacityAlignment;
    CheckCapacity(name, capacity);
  }
  spec.capacity = capacity;
  return spec;
}

IWrapper::IWrapper(Spec const& spec, Role role, mode_t mode, gid_t group, HugePages huge_pages,
                   std::chrono::milliseconds wait_for_buffer, TypeTag type)
    : spec_(Spec::Make(std::string_view(spec.name, ::strnlen(spec.name, sizeof spec.name)), spec.capacity)) {
  if (role == Role::kWriter && spec_.capacity == 0) {
    throw std::length_error("ring " + Q(spec_.Name()) + ": a writer needs a capacity");
  }
  try {
    if (role == Role::kWriter) {
      AttachAsWriter(mode, group, huge_pages, type);
    } else {
      AttachAsReader(wait_for_buffer);
    }
  } catch (...) {
    KeepAttachedSegments();
    throw;
  }
}

void IWrapper::KeepAttachedSegments() noexcept {
  for (auto* shm : {&state_shm_, &data_shm_}) {
    if (shm->has_value() && !(*shm)->Created()) (*shm)->KeepOnDetach();
  }
}

TypeTag IWrapper::RecordedType() const noexcept {
  // type_size last on a stamp (see Writer::Writer), so it is loaded first.
  std::uint32_t const size = std::atomic_ref<std::uint32_t>(state_->type_size).load(std::memory_order_acquire);
  return {size, std::atomic_ref<std::uint32_t>(state_->type_align).load(std::memory_order_relaxed),
          std::atomic_ref<std::uint64_t>(state_->type_id).load(std::memory_order_relaxed)};
}

void IWrapper::AttachAsWriter(mode_t mode, gid_t group, HugePages huge_pages, TypeTag type) {
  // The state segment is the ring's "ready" mark, so the data segment is
  // created first and the state second; an existing state is checked first,
  // so that a capacity mismatch is reported as the ring's.
  if (SharedMemory::Exists(spec_.Name())) {
    try {
      state_shm_.emplace(spec_.Name(), sizeof(State),
                         ShmOptions{.open = OpenMode::kAttach, .mode = mode, .group = group});
    } catch (std::system_error const& e) {
      // Removed meanwhile, or unfinished by a creator that died (the attach
      // removed it): create the ring below.
      if (e.code().value() != ENOENT) throw;
    }
    if (state_shm_) {
      BindState(state_shm_->AsStruct<State>());
      Validate();
    }
  }
  // A state without its data segment: the last process out of the ring
  // unlinks NAME.data, then NAME, and was killed in between. Its positions
  // describe records that are gone, so when the data segment has to be
  // created, they are moved on to an empty lap (see ResetPositions), inside
  // the data segment's `initialize`: no reader can attach to the new data
  // and start from the old positions.
  State* const orphan = state_;
  // Laid out in this process's page size, as SharedMemory creates it. An
  // existing segment laid out in other pages is refused there if its size
  // differs; if not (a capacity that is a multiple of both), CheckEndMark
  // uses the segment's own header_bytes, so either way is consistent.
  std::uint64_t const end_mark = EndMarkOffset(spec_.capacity, PageSize());
  data_shm_.emplace(DataName(spec_), DataBytes(spec_.capacity, PageSize()),
                    ShmOptions{.mode = mode,
                               .group = group,
                               .huge_pages = huge_pages,
                               .initialize = [orphan, end_mark](std::span<std::byte> region) {
                                 StoreWord(region.data(), end_mark, kEndMark);
                                 if (orphan != nullptr) ResetPositions(*orphan);
                               }});
  if (!state_shm_) {
    std::uint64_t const capacity = spec_.capacity;
    state_shm_.emplace(
        spec_.Name(), sizeof(State),
        ShmOptions{.mode = mode, .group = group, .initialize = [capacity, type](std::span<std::byte> region) {
                     InitState(region, capacity, type);
                   }});
    BindState(state_shm_->AsStruct<State>());
    Validate();
  }
  data_ = data_shm_->Data();
  CheckEndMark(*data_shm_);
}

void IWrapper::CheckEndMark(SharedMemory const& data) {
  // The end mark's page is one of the data segment's own pages (its header
  // says how large), not necessarily one of this kernel's.
  std::uint64_t const page = data.HeaderBytes();
  if (data.Size() != DataBytes(capacity_, page)) {
    throw std::length_error("ring " + Q(spec_.Name()) + ": data segment " + Q(DataName(spec_)) + " holds " +
                            std::to_string(data.Size()) + " bytes, a ring of capacity " + std::to_string(capacity_) +
                            " laid out in " + std::to_string(page) + "-byte pages has " +
                            std::to_string(DataBytes(capacity_, page)));
  }
  end_mark_ = EndMarkOffset(capacity_, page);
  if (LoadWord(data_, end_mark_) != kEndMark) {
    throw std::invalid_argument("ring " + Q(spec_.Name()) + ": data segment " + Q(DataName(spec_)) +
                                " lacks its end mark (damaged, or made by another version)");
  }
}

bool IWrapper::EndMarkGone() noexcept {
  // The load faults if the page is gone: the truncation guard maps zeros
  // there, so the mark reads 0.
  if (LoadWord(data_, end_mark_) == kEndMark) return false;
  shrunk_ = true;
  return true;
}

void IWrapper::AttachAsReader(std::chrono::milliseconds wait_for_buffer) {
  auto const deadline = std::chrono::steady_clock::now() + wait_for_buffer;
  for (;;) {
    try {
      // Read-only: a reader writes nothing in the State (only the wake word,
      // in the header page, which stays writable).
      state_shm_.emplace(spec_.Name(), sizeof(State),
                         ShmOptions{.open = OpenMode::kAttach, .access = Access::kReadOnly});
      break;
    } catch (std::system_error const& e) {
      if (e.code().value() != ENOENT) throw;
      if (std::chrono::steady_clock::now() >= deadline) {
        throw std::system_error(ENOENT, std::generic_category(),
                                "ring " + Q(spec_.Name()) + " does not exist (no writer has created it)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  // std::atomic_ref<T const> arrives only in C++26, so the State is held
  // through a non-const pointer; the mapping is PROT_READ and a reader only
  // loads through it (a store would fault, which is the point).
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast)
  BindState(const_cast<State*>(state_shm_->AsStruct<State const>()));
  Validate();
  // Any size: CheckEndMark judges it against the segment's own page size.
  data_shm_.emplace(DataName(spec_), 0, ShmOptions{.open = OpenMode::kAttach, .access = Access::kReadOnly});
  data_ = data_shm_->Data();  // mapped PROT_READ: a Reader never writes through it
  CheckEndMark(*data_shm_);
}

// Treats the shared header as untrusted: everything the hot paths rely on is
// checked once here and then copied into this object.
void IWrapper::Validate() {
  // The header is judged and used from one copy (another process with
  // write access could change the mapping between a check and a use).
  State s{};
  std::memcpy(static_cast<void*>(&s), static_cast<void const*>(state_), offsetof(State, pad0));
  std::string const ring = "ring " + Q(spec_.Name());
  std::uint64_t const magic = std::atomic_ref<std::uint64_t>(state_->magic).load(std::memory_order_acquire);
  if (magic != kRingMagic) throw std::invalid_argument(ring + ": not a circbuf ring (bad magic)");
  if (s.version != kRingVersion) {
    throw std::invalid_argument(ring + ": layout version " + std::to_string(s.version) +
                                ", this library reads version " + std::to_string(kRingVersion));
  }
  // The rules of a State are stated once, in :inspect (HeaderProblem,
  // PositionProblem): `circbuf stat` and Inspect judge a ring by the same.
  if (std::string const problem = HeaderProblem(s); !problem.empty()) {
    throw std::invalid_argument(ring + ": corrupt header: " + problem);
  }
  if (spec_.capacity != 0 && spec_.capacity != s.capacity) {
    throw std::length_error(ring + ": exists with capacity " + std::to_string(s.capacity) + ", asked for " +
                            std::to_string(spec_.capacity));
  }
  // tail and limit are two loads, and a live writer goes on between them: a
  // process preempted there saw tail laps behind limit and refused a healthy
  // ring (found by circbuf-torture under clang-tsan: "corrupt positions
  // (tail 40783808, limit 40836096)", capacity 8192). So the snapshot counts
  // when tail reads the same after latest and limit as before (tail never
  // goes backwards). This only retries: a State whose positions really
  // disagree reads the same each time and is refused below.
  std::uint64_t tail = 0;
  std::uint64_t latest = 0;
  std::uint64_t limit = 0;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    tail = std::atomic_ref<std::uint64_t>(state_->tail).load(std::memory_order_acquire);
    latest = std::atomic_ref<std::uint64_t>(state_->latest).load(std::memory_order_acquire);
    limit = std::atomic_ref<std::uint64_t>(state_->limit).load(std::memory_order_acquire);
    if (std::atomic_ref<std::uint64_t>(state_->tail).load(std::memory_order_acquire) == tail) break;
  }
  if (std::string const problem = PositionProblem(tail, latest, limit, s.capacity, s.chunk); !problem.empty()) {
    throw std::invalid_argument(ring + ": corrupt positions: " + problem);
  }
  truncations_seen_ = truncations_->load(std::memory_order_relaxed);
  capacity_ = s.capacity;
  chunk_ = s.chunk;
  max_message_ = s.max_message;
  spec_.capacity = s.capacity;
}

void IWrapper::BindState(State* state) noexcept {
  state_ = state;
  // NOLINTNEXTLINE(bugprone-unchecked-optional-access): called right after state_shm_ was engaged
  wake_ = reinterpret_cast<std::uint32_t*>(state_shm_->AttacherLine() + kWakeWordOffset);
}

WriterStatus IWrapper::GetWriterStatus() const {
  auto const state =
      static_cast<WriterState>(std::atomic_ref<std::uint32_t>(state_->writer_state).load(std::memory_order_acquire));
  if (state == WriterState::kNone) return WriterStatus::kNone;
  if (state == WriterState::kClosed) return WriterStatus::kClosed;
  try {
    return WriterLockHeld(StateHandle()) ? WriterStatus::kAlive : WriterStatus::kDead;
  } catch (std::system_error const& e) {
    throw std::system_error(e.code(), "fcntl(F_OFD_GETLK) on ring " + Q(spec_.Name()));
  }
}

bool IWrapper::Truncated() const noexcept {
  return shrunk_ || (state_shm_ && state_shm_->Truncated()) || (data_shm_ && data_shm_->Truncated());
}

bool IWrapper::CheckShrunk() noexcept {
  for (auto const* shm : {&state_shm_, &data_shm_}) {
    if (!shm->has_value()) continue;
    struct stat st{};
    if (::fstat((*shm)->NativeHandle(), &st) == 0 &&
        static_cast<std::uint64_t>(st.st_size) < (*shm)->HeaderBytes() + static_cast<std::uint64_t>((*shm)->Size())) {
      shrunk_ = true;
    }
  }
  return shrunk_;
}

std::size_t IWrapper::HugePageBytes() const { return data_shm_ ? data_shm_->HugePageBytes() : 0; }

pid_t IWrapper::WriterPid() const noexcept {
  return std::atomic_ref<std::int32_t>(state_->writer_pid).load(std::memory_order_acquire);
}

}  // namespace circbuf::CircularBuffer
