//! [`Exit`]: how a command that has already printed its outcome picks the process exit code
//! (`diff`: 1 = different; `health`: 1 degraded, 2 critical; `migrate generate`: 3 = not
//! verified). `main` prints nothing more for it.

/// The process exit code `main` uses instead of its default.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}
