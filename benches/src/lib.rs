//! benches: criterion benches (`benches/`) and end-to-end bench binaries. Each bench prints its
//! figure beside a reference measured in the same run (a peer such as Orthanc, or the
//! machine's limit such as memcpy bandwidth); medians go to docs/PERFORMANCE.md.
