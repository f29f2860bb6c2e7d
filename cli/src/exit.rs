//! [`Exit`]: how a command that has already printed its outcome picks the process exit code
//! (`diff`: 1 = different; `health`: 1 degraded, 2 critical; `migrate generate`: 3 = not
//! verified). `main` prints nothing more for it. [`one_line`]: how an error is rendered.

/// The process exit code `main` uses instead of its default.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// Prints `error: MESSAGE` and exits with `code` (for commands with their own exit codes).
pub fn fail(code: u8, message: impl std::fmt::Display) -> anyhow::Result<()> {
    eprintln!("error: {}", message.to_string().replace('\n', " "));
    Err(Exit(code).into())
}

/// An error and its causes on one line, `outer: cause: cause`, each cause once: an error that
/// already quotes its source in its own message (`... : {source}`) does not repeat it.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(e);
    while let Some(cause) = next {
        next = cause.source();
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read f: {source}")]
    struct Quoting {
        source: std::io::Error,
    }

    #[test]
    fn each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(Quoting { source: io }).context("loading");
        assert_eq!(one_line(e.as_ref()), "loading: cannot read f: no such file");
        let plain = anyhow::anyhow!("a\nb").context("c");
        assert_eq!(one_line(plain.as_ref()), "c: a b");
        let typed = Quoting {
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        assert_eq!(one_line(&typed), "cannot read f: gone");
    }
}
