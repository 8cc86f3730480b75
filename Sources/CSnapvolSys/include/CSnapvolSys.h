#ifndef CSNAPVOLSYS_H
#define CSNAPVOLSYS_H

#include <spawn.h>
#include <stdint.h>

/// Size in bytes of the block device open on `fd` (BLKGETSIZE64).
/// Returns 0 on success, or the errno value on failure.
int snapvol_block_device_size(int fd, uint64_t *size);

/// Logical sector size of the block device open on `fd` (BLKSSZGET).
/// Returns 0 on success, or the errno value on failure.
int snapvol_block_device_sector_size(int fd, int *size);

/// The O_DIRECT open flag (not exported by Glibc's Swift overlay).
int snapvol_o_direct(void);

/// The lseek whence values SEEK_DATA and SEEK_HOLE (swift-system names them only on Darwin
/// and FreeBSD; Glibc defines them under _GNU_SOURCE).
int snapvol_seek_data(void);
int snapvol_seek_hole(void);

/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34, declared only under _GNU_SOURCE):
/// the spawned program gets no descriptor from `from` on. Returns 0 or the errno value.
int snapvol_spawn_close_from(posix_spawn_file_actions_t *actions, int from);

/// fdatasync(2); returns 0 or the errno value.
int snapvol_fdatasync(int fd);

/// sync_file_range(2) with SYNC_FILE_RANGE_WRITE: starts writeback of the range's dirty pages
/// without waiting for it. Returns 0 or the errno value.
int snapvol_start_writeback(int fd, uint64_t offset, uint64_t length);

/// fallocate(2) with FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE: deallocates the range, which
/// then reads as zeros (a regular file's hole; on a block device, zeroed without a fallback to
/// writing zeros). Returns 0 or the errno value.
int snapvol_punch_hole(int fd, uint64_t offset, uint64_t length);

/// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC (declared only under _GNU_SOURCE): the new
/// connection's descriptor, or -1 with errno set.
int snapvol_accept(int fd);

/// F_OFD_SETLK of the one byte at `offset`: a shared (read) lock if `locked`, else unlocked.
/// Open-file-description locks, as qemu's image locking uses. Returns 0 or the errno value.
int snapvol_ofd_share_byte(int fd, uint64_t offset, int locked);

/// F_OFD_GETLK of the one byte at `offset` for an exclusive lock: `*held` is 1 when another open
/// file description holds a lock on it. Returns 0 or the errno value.
int snapvol_ofd_byte_held(int fd, uint64_t offset, int *held);

#endif
