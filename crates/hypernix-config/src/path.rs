//! Attribute paths as Nix writes them, and "did you mean" hints.

use std::fmt;

/// An attribute path such as `hypervisor.compute.units.web.resources`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AttrPath(Vec<String>);

impl AttrPath {
    /// The path `hypervisor`.
    pub fn root() -> AttrPath {
        AttrPath(vec!["hypervisor".into()])
    }

    /// The path made of these segments.
    pub fn from_segments<I: IntoIterator<Item = S>, S: Into<String>>(segments: I) -> AttrPath {
        AttrPath(segments.into_iter().map(Into::into).collect())
    }

    /// This path with `segment` appended (a list index is written `[N]` in Display).
    pub fn join(&self, segment: impl fmt::Display) -> AttrPath {
        let mut v = self.0.clone();
        v.push(segment.to_string());
        AttrPath(v)
    }

    /// The segments.
    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if s.starts_with('[') && s.ends_with(']') && s[1..s.len() - 1].parse::<usize>().is_ok()
            {
                f.write_str(s)?;
                continue;
            }
            if i > 0 {
                f.write_str(".")?;
            }
            if is_identifier(s) {
                f.write_str(s)?;
            } else {
                write!(f, "{s:?}")?;
            }
        }
        Ok(())
    }
}

/// A list index segment, displayed as `[i]`.
pub fn index(i: usize) -> String {
    format!("[{i}]")
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '\''))
}

/// `"; did you mean `x`?"` for the closest of `candidates`, or an empty string.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_and_indexes() {
        let p = AttrPath::root()
            .join("composition")
            .join("files")
            .join("/etc/security.conf")
            .join(index(2))
            .join("mode");
        assert_eq!(
            p.to_string(),
            "hypervisor.composition.files.\"/etc/security.conf\"[2].mode"
        );
    }

    #[test]
    fn hints() {
        assert_eq!(
            did_you_mean("memroy", ["memory", "compute"]),
            "; did you mean `memory`?"
        );
        assert_eq!(did_you_mean("zzz", ["memory"]), "");
    }
}
