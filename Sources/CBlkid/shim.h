#ifndef SNAPVOL_BLKID_SHIM_H
#define SNAPVOL_BLKID_SHIM_H

/* libblkid (util-linux) recognises filesystems, partition tables, RAID and volume-manager
   members, swap and encrypted volumes by their on-disk signatures. snapvol asks it what a device
   already holds before formatting a COW or a spare area over it. (pkg-config flags are dropped
   for system-library targets, hence the directory in the include.) */
#include <blkid/blkid.h>

/* The probe flags are macros: wrapped so Swift sees them as values. */
static inline int snapvol_blkid_superblock_flags(void) {
    return BLKID_SUBLKS_TYPE | BLKID_SUBLKS_LABEL | BLKID_SUBLKS_USAGE;
}

#endif
