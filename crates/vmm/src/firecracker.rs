//! Firecracker driver (to be written on branch `firecracker`).
