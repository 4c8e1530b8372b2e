// circbuf tool: rings seen from outside, with the tool's exit codes. The
// look itself is the library's (circbuf.ring:inspect); this header only
// maps its errors. Included after `import circbuf;` (it names module types
// and includes nothing: docs/toolchain-notes.md, "Includes, imports
// and where spdlog may go", rule 1).
#pragma once

namespace circbuf::tool {

using CircularBuffer::SegmentInfo;
using CircularBuffer::SegmentKind;

// CircularBuffer::Inspect, its errors as Error (ENOENT -> kNoSuchBuffer,
// EACCES -> kPermission, not a regular file -> kNotCircbuf).
SegmentInfo InspectSegment(std::string const& name);
// InspectSegment, then Error(kNotCircbuf) unless it is a ring of our layout
// version, undamaged and not corrupt (with `allow_damaged`, a damaged or
// corrupt ring is returned instead: see SegmentInfo::damage and ::corrupt).
// A ring being created is given a moment to be finished.
SegmentInfo InspectRing(std::string const& name, bool allow_damaged = false);
// "alive", "dead", ... (CircularBuffer::ToString), as a std::string.
std::string WriterName(SegmentInfo const& s);

}  // namespace circbuf::tool
