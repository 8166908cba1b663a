//! QEMU microvm driver.
