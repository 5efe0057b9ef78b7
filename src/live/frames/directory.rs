//! Frames from the JPEG and PNG files of a directory, in file-name order, optionally paced.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{FrameSource, Next};
use crate::imaging::photo;

pub struct DirectorySource {
    dir: PathBuf,
    files: Vec<PathBuf>,
    next: usize,
    pace: Option<(Duration, Instant)>,
}

impl DirectorySource {
    /// Lists the directory's `.jpg`, `.jpeg` and `.png` files (other files are ignored). With
    /// `fps`, frames are released at that rate, as a camera would deliver them.
    pub fn open(dir: &Path, fps: Option<f64>) -> Result<DirectorySource, String> {
        let fail =
            |e: std::io::Error| format!("cannot read frame directory {}: {e}", dir.display());
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(fail)? {
            let path = entry.map_err(fail)?.path();
            let is_image = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"));
            if is_image && path.is_file() {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(format!(
                "frame directory {} holds no .jpg, .jpeg or .png files",
                dir.display()
            ));
        }
        files.sort();
        let pace = match fps {
            Some(f) if f.is_finite() && f > 0.0 => {
                Some((Duration::from_secs_f64(1.0 / f), Instant::now()))
            }
            Some(f) => return Err(format!("the frame rate must be a positive number, not {f}")),
            None => None,
        };
        Ok(DirectorySource {
            dir: dir.to_path_buf(),
            files,
            next: 0,
            pace,
        })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

impl FrameSource for DirectorySource {
    fn describe(&self) -> String {
        format!("frame directory {}", self.dir.display())
    }

    fn is_live(&self) -> bool {
        self.pace.is_some()
    }

    fn next_frame(&mut self) -> Result<Next, String> {
        let Some(path) = self.files.get(self.next) else {
            return Ok(Next::End);
        };
        if let Some((period, start)) = self.pace {
            let due = start + period * self.next as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        self.next += 1;
        Ok(match photo::load(path) {
            Ok(photo) => Next::Frame(photo),
            Err(e) => Next::Skipped(e.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("facegate-dir-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn frames_come_in_name_order_and_bad_ones_are_skipped() {
        let dir = scratch("order");
        let img = image::RgbImage::from_pixel(4, 3, image::Rgb([10, 20, 30]));
        img.save(dir.join("b.png")).unwrap();
        image::RgbImage::from_pixel(2, 2, image::Rgb([1, 2, 3]))
            .save(dir.join("a.PNG"))
            .unwrap();
        std::fs::write(dir.join("c.jpg"), b"not a jpeg").unwrap();
        std::fs::write(dir.join("notes.txt"), b"ignored").unwrap();
        let mut src = DirectorySource::open(&dir, None).unwrap();
        assert_eq!(src.len(), 3);
        let sizes: Vec<String> = std::iter::from_fn(|| match src.next_frame().unwrap() {
            Next::Frame(p) => Some(format!("{}x{}", p.width(), p.height())),
            Next::Skipped(why) => Some(format!("skipped: {why}")),
            Next::End => None,
        })
        .collect();
        assert_eq!(sizes[..2], ["2x2".to_string(), "4x3".to_string()]);
        assert!(
            sizes[2].starts_with("skipped: cannot read image ") && sizes[2].contains("c.jpg"),
            "{sizes:?}"
        );
        assert_eq!(sizes.len(), 3);
    }

    #[test]
    fn missing_or_empty_directories_are_named() {
        let err = DirectorySource::open(Path::new("/nonexistent/frames"), None)
            .err()
            .unwrap();
        assert!(err.contains("/nonexistent/frames"), "{err}");
        let dir = scratch("empty");
        let err = DirectorySource::open(&dir, None).err().unwrap();
        assert!(err.contains("holds no .jpg"), "{err}");
        let err = DirectorySource::open(&dir, Some(0.0)).err().unwrap();
        assert!(
            err.contains("holds no") || err.contains("frame rate"),
            "{err}"
        );
    }
}
