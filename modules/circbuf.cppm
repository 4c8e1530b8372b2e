// circbuf: one writer, many readers, a broadcast ring in shared memory.
// The umbrella module; each part can also be imported on its own:
//   circbuf.sync  SemaphoreLock, name validation, logging level
//   circbuf.shm   SharedMemory and the Storable concept
//   circbuf.ring  CircularBuffer::Spec, State, Writer, Reader
//   circbuf.record  Recording::RecordingWriter/RecordingReader (recordings in files)
export module circbuf;

export import circbuf.sync;
export import circbuf.shm;
export import circbuf.ring;
export import circbuf.record;
