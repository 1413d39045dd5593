//! Times unpacking layers into a directory: `unpack_bench DEST LAYER...` (DEST is created;
//! it should not exist or be empty). Compare with `tar -xzf` of the same layers in order.

use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let dest = PathBuf::from(args.next().expect("usage: unpack_bench DEST LAYER..."));
    let layers: Vec<(String, File)> = args
        .map(|p| {
            let f = File::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.to_string_lossy()));
            (p.to_string_lossy().into_owned(), f)
        })
        .collect();
    std::fs::create_dir_all(&dest).unwrap();
    let start = Instant::now();
    let stats = archive::unpack_layers(layers, &dest, &archive::UnpackOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let elapsed = start.elapsed();
    println!("{:.3}s {stats:?}", elapsed.as_secs_f64());
}
