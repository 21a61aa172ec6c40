//! The file-system [`World`]: local model directories and the runtime's data profiles, both
//! resolved relative to the pipeline file (profiles live in `.tunec/<pipeline>/profiles/<node>.json`
//! beside it, where the data engine writes them). `tunec check` and the language server use it alike.

use std::path::{Path, PathBuf};
use tunec_compiler::World;

pub struct FsWorld {
    base: PathBuf,
}

impl FsWorld {
    /// A world whose relative paths start at the directory holding `pipeline_file`.
    pub fn for_pipeline(pipeline_file: &Path) -> Self {
        let base = pipeline_file.parent().map(Path::to_path_buf).unwrap_or_default();
        FsWorld { base }
    }
}

impl World for FsWorld {
    fn read(&self, dir: &str, file: &str) -> Result<String, String> {
        let path = self.base.join(dir).join(file);
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn calibration(&self) -> Option<String> {
        std::fs::read_to_string(self.base.join(tunec_compiler::estimate::calibration::FILE)).ok()
    }

    fn profile(&self, pipeline: &str, node: &str) -> Option<String> {
        let path = self.base.join(".tunec").join(pipeline).join("profiles").join(format!("{node}.json"));
        std::fs::read_to_string(path).ok()
    }
}
