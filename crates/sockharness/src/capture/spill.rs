//! A live capture's pcap on disk. A capture keeps its frames in memory until they hold more
//! payload than asked; from then on every frame goes whole to a temporary pcap file, and memory
//! keeps only its headers and first bytes, which is all decoding and wire expectations read.
//! So a scenario that moves gigabytes costs their size on disk, not in memory.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::pcap::{self, Capture, LinkType, Packet};
use super::KEPT_PAYLOAD;

/// Bytes of a frame kept in memory once its capture spills: the link, IP and TCP headers at
/// their largest (14 + 60 + 60) and the payload a decoded segment keeps.
pub const KEPT_WHEN_SPILLED: usize = 14 + 60 + 60 + KEPT_PAYLOAD;

/// A capture's frames, whole, in a pcap file being written.
pub(crate) struct Spill {
    out: pcap::Writer<BufWriter<File>>,
    path: tempfile::TempPath,
}

impl Spill {
    /// Starts a file in `dir` (created if missing) with every frame captured so far: pcapng
    /// where the frames were seen at several `interfaces`.
    pub(crate) fn start(
        dir: &Path,
        link: LinkType,
        interfaces: &[String],
        so_far: &[Packet],
    ) -> io::Result<Spill> {
        fs::create_dir_all(dir)?;
        let (file, path) = tempfile::Builder::new()
            .prefix(".sockharness-capture-")
            .suffix(".pcap")
            .tempfile_in(dir)?
            .into_parts();
        let out = BufWriter::with_capacity(1 << 20, file);
        let mut out = pcap::Writer::with_interfaces(out, link, interfaces)?;
        for p in so_far {
            out.packet(p)?;
        }
        Ok(Spill { out, path })
    }

    /// Appends one frame, whole.
    pub(crate) fn packet(&mut self, p: &Packet) -> io::Result<()> {
        self.out.packet(p)
    }

    /// Flushes the file and hands it over: it is removed when the last [`CaptureFile`] is
    /// dropped, unless it was saved.
    pub(crate) fn finish(self) -> io::Result<CaptureFile> {
        self.out.into_inner().flush()?;
        Ok(CaptureFile(Arc::new(self.path)))
    }
}

/// Cuts a frame to what memory keeps of it once its capture spills; its original length stays.
pub(crate) fn cut(p: &mut Packet) {
    if p.data.len() > KEPT_WHEN_SPILLED {
        p.data.truncate(KEPT_WHEN_SPILLED);
        p.data.shrink_to_fit();
    }
}

/// A finished capture's pcap file, whole packets in capture order. It is temporary: it goes
/// away with the last clone, so save it with [`CaptureFile::save`] to keep it.
#[derive(Clone, Debug)]
pub struct CaptureFile(Arc<tempfile::TempPath>);

impl CaptureFile {
    /// Where the file is now.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Makes the capture available at `to`: a hard link where it is on the same file system,
    /// else a copy.
    pub fn save(&self, to: &Path) -> io::Result<()> {
        match fs::remove_file(to) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::hard_link(self.path(), to).or_else(|_| fs::copy(self.path(), to).map(drop))
    }
}

/// Writes a capture to `to`: from its file when it spilled (memory holds only its packets'
/// headers then), else from memory.
pub fn save(capture: &Capture, file: Option<&CaptureFile>, to: &Path) -> io::Result<()> {
    match file {
        Some(f) => f.save(to),
        None => pcap::write(BufWriter::new(File::create(to)?), capture),
    }
}

/// Where spilled captures go unless a run says otherwise.
pub(crate) fn default_dir() -> PathBuf {
    std::env::temp_dir()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn packet(len: usize) -> Packet {
        Packet {
            ts: Duration::from_secs(1),
            data: (0..len).map(|i| i as u8).collect(),
            orig_len: len as u32,
            seen: None,
        }
    }

    #[test]
    fn a_spilled_capture_reads_back_whole_and_memory_keeps_only_headers() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::start(dir.path(), LinkType::Ethernet, &[], &[packet(100)]).unwrap();
        let mut big = packet(5000);
        spill.packet(&big).unwrap();
        cut(&mut big);
        assert_eq!(big.data.len(), KEPT_WHEN_SPILLED);
        assert_eq!(big.orig_len, 5000);
        let file = spill.finish().unwrap();
        let saved = dir.path().join("kept.pcap");
        file.save(&saved).unwrap();
        let back = pcap::read(&fs::read(&saved).unwrap()).unwrap();
        assert_eq!(back.packets, vec![packet(100), packet(5000)]);
        // The temporary file goes with its last handle; the saved one stays.
        let temp = file.path().to_path_buf();
        drop(file);
        assert!(!temp.exists());
        assert!(saved.exists());
    }

    #[test]
    fn saving_over_an_existing_file_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("x.pcap");
        fs::write(&saved, b"old").unwrap();
        let file = Spill::start(dir.path(), LinkType::Ethernet, &[], &[packet(60)])
            .unwrap()
            .finish()
            .unwrap();
        file.save(&saved).unwrap();
        assert_eq!(
            pcap::read(&fs::read(&saved).unwrap()).unwrap().packets,
            vec![packet(60)]
        );
    }
}
