// circbuf.ring: the single-writer, multi-reader broadcast ring.
//   :layout   Spec, State, the record format, outcome constants (the layout, once)
//   :wrapper  IWrapper: the segments of a ring, validated
//   :writer   Writer: Write, Claim/Commit, ScopedClaim
//   :reader   Reader: Read, ReadInPlace, Receive, Poll, Wait
//   :typed    TypedWriter<T>, TypedReader<T>: one Storable T per message
//   :inspect  Inspect, List, Remove: rings seen from outside (pread, no attach); the State's rules
export module circbuf.ring;

export import circbuf.shm;
export import :layout;
export import :wrapper;
export import :writer;
export import :reader;
export import :typed;
export import :inspect;
