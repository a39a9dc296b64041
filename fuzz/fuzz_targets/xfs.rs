//! XFS on-disk structure parsers on arbitrary bytes, below the superblock CRC that
//! keeps most whole-disk inputs out (the `filesystems` target covers mounting): inodes,
//! every directory block form, block map roots, btree blocks and extent lists, AG
//! headers, remote symlink blocks, the superblock itself and the log clean check. The
//! first byte picks a v4 (no CRCs to pass) or v5 geometry. No input may panic or hang.
#![no_main]
use appliance::fs::xfs::logcheck::Log;
use appliance::fs::xfs::ondisk::{ag, bmap, dir, inode, sb::Superblock, symlink};
use libfuzzer_sys::fuzz_target;

fn geometry(v5: bool) -> Superblock {
    Superblock {
        version: if v5 { 5 } else { 4 },
        block_size: 4096,
        block_log: 12,
        sect_size: 512,
        dblocks: 16384,
        rblocks: 0,
        uuid: [7; 16],
        meta_uuid: [7; 16],
        log_start: 4102,
        log_blocks: 1368,
        root_ino: 128,
        ag_blocks: 4096,
        ag_count: 4,
        agblk_log: 12,
        inode_size: 512,
        inode_log: 9,
        inopb_log: 3,
        label: [0; 12],
        icount: 64,
        ifree: 60,
        fdblocks: 10000,
        imax_pct: 25,
        dir_blk_log: 0,
        versionnum: if v5 { 0xB4A5 } else { 0xB4A4 },
        features2: 0x28A,
        ro_compat: 0xD,
        incompat: 0xB,
        log_incompat: 0,
        ftype: true,
        logv2: true,
        ascii_ci: false,
        nlink_v2: true,
    }
}

/// `body` cut or zero-padded to `len` bytes.
fn sized(body: &[u8], len: usize) -> Vec<u8> {
    let mut v = body.get(..len.min(body.len())).unwrap_or(&[]).to_vec();
    v.resize(len, 0);
    v
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let _ = Superblock::parse(body);
    let sb = geometry(first & 1 == 1);
    let ino = 128 + u64::from(first >> 1);
    let inode_buf = sized(body, 512);
    let block = sized(body, 4096);
    let _ = inode::parse(&sb, ino, &inode_buf);
    let _ = dir::parse_shortform(&sb, ino, body);
    let _ = dir::parse_data_block(&sb, ino, &block, 0, false);
    let _ = dir::parse_data_block(&sb, ino, &block, 0, true);
    let _ = dir::parse_da_block(&sb, ino, &block, 0);
    let _ = dir::hashname(body);
    let _ = bmap::parse_root(&sb, ino, body);
    for level in 0..3 {
        let _ = bmap::parse_block(&sb, ino, 1000, &block, level, 0);
    }
    let _ = bmap::parse_records(&sb, ino, body, body.len() / 16, 0);
    let _ = ag::parse_agf(&sb, 1, body);
    let _ = ag::parse_agi(&sb, 1, body);
    let _ = symlink::parse_remote(&sb, ino, body, 0, 0, body.len().min(symlink::MAX_LEN));
    // The bytes as a whole log.
    let n = (body.len() / 512) as u64;
    if n >= 2 {
        let read = |bb: u64, buf: &mut [u8]| {
            let at = bb as usize * 512;
            match body.get(at..at + buf.len()) {
                Some(s) => {
                    buf.copy_from_slice(s);
                    Ok(())
                }
                None => Err(wire::Error::new(wire::ErrorKind::Io, "past the log")),
            }
        };
        let _ = Log::new(read, n, first & 2 == 0).state();
    }
});
