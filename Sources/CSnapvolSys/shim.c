#define _GNU_SOURCE
#include "CSnapvolSys.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int snapvol_block_device_size(int fd, uint64_t *size) {
    return ioctl(fd, BLKGETSIZE64, size) == 0 ? 0 : errno;
}

int snapvol_block_device_sector_size(int fd, int *size) {
    return ioctl(fd, BLKSSZGET, size) == 0 ? 0 : errno;
}

int snapvol_o_direct(void) { return O_DIRECT; }

int snapvol_seek_data(void) { return SEEK_DATA; }

int snapvol_spawn_close_from(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

int snapvol_seek_hole(void) { return SEEK_HOLE; }

int snapvol_fdatasync(int fd) {
    int r;
    do { r = fdatasync(fd); } while (r != 0 && errno == EINTR);
    return r == 0 ? 0 : errno;
}

int snapvol_start_writeback(int fd, uint64_t offset, uint64_t length) {
    return sync_file_range(fd, (off64_t)offset, (off64_t)length, SYNC_FILE_RANGE_WRITE) == 0 ? 0 : errno;
}

int snapvol_punch_hole(int fd, uint64_t offset, uint64_t length) {
    int r;
    do {
        r = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
    } while (r != 0 && errno == EINTR);
    return r == 0 ? 0 : errno;
}

int snapvol_accept(int fd) { return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); }

static int ofd_byte(int fd, int command, short type, uint64_t offset, struct flock *lock) {
    *lock = (struct flock){ .l_type = type, .l_whence = SEEK_SET, .l_start = (off_t)offset, .l_len = 1 };
    return fcntl(fd, command, lock) == 0 ? 0 : errno;
}

int snapvol_ofd_share_byte(int fd, uint64_t offset, int locked) {
    struct flock lock;
    return ofd_byte(fd, F_OFD_SETLK, locked ? F_RDLCK : F_UNLCK, offset, &lock);
}

int snapvol_ofd_byte_held(int fd, uint64_t offset, int *held) {
    struct flock lock;
    int result = ofd_byte(fd, F_OFD_GETLK, F_WRLCK, offset, &lock);
    *held = result == 0 && lock.l_type != F_UNLCK;
    return result;
}
