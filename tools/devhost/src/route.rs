//! HTTP trigger route templates (`jobs/{id}`, `{id:int}`, `{name?}`, `{*rest}`)
//! matched the way the Functions host's ASP.NET routing does: literal segments
//! case-insensitively, constraints accepted but not enforced.

use std::cmp::Ordering;

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param { name: String, optional: bool, default: Option<String>, catch_all: bool },
}

/// A parsed route template, including the route prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTemplate {
    segments: Vec<Segment>,
}

impl RouteTemplate {
    /// Parses `prefix` + `route` (both without leading or trailing slashes needed).
    pub fn parse(prefix: &str, route: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        for text in prefix.split('/').chain(route.split('/')) {
            if text.is_empty() {
                continue;
            }
            segments.push(parse_segment(text)?);
        }
        // Optional and catch-all parameters must come last, as in ASP.NET.
        for (i, seg) in segments.iter().enumerate() {
            if let Segment::Param { optional, catch_all, name, .. } = seg {
                let later_required = segments[i + 1..].iter().any(|s| match s {
                    Segment::Literal(_) => true,
                    Segment::Param { optional, catch_all, .. } => !optional && !catch_all,
                });
                if (*optional || *catch_all) && later_required {
                    return Err(format!(
                        "route parameter '{name}' is optional or catch-all but is followed by required segments"
                    ));
                }
                if *catch_all && i + 1 != segments.len() {
                    return Err(format!("catch-all parameter '{name}' must be the last segment"));
                }
            }
        }
        Ok(RouteTemplate { segments })
    }

    /// Whether the template declares any route parameter.
    pub fn has_params(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Param { .. }))
    }

    /// The template as text, e.g. `api/jobs/{id}` (constraints dropped).
    pub fn display(&self) -> String {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.clone(),
                Segment::Param { name, optional, catch_all, .. } => {
                    format!("{{{}{}{}}}", if *catch_all { "*" } else { "" }, name, if *optional { "?" } else { "" })
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Matches a request path (as sent, percent-encoded). Returns the route
    /// values in template order, or `None` when the path does not match.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let parts: Vec<&str> = if trimmed.is_empty() { Vec::new() } else { trimmed.split('/').collect() };
        let mut values = Vec::new();
        let mut j = 0;
        for seg in &self.segments {
            match seg {
                Segment::Literal(lit) => {
                    let part = parts.get(j)?;
                    if !percent_decode(part).eq_ignore_ascii_case(lit) {
                        return None;
                    }
                    j += 1;
                }
                Segment::Param { name, catch_all: true, default, .. } => {
                    let rest = parts[j.min(parts.len())..].join("/");
                    j = parts.len();
                    if !rest.is_empty() {
                        values.push((name.clone(), percent_decode(&rest)));
                    } else if let Some(d) = default {
                        values.push((name.clone(), d.clone()));
                    }
                }
                Segment::Param { name, optional, default, .. } => match parts.get(j) {
                    Some(part) if !part.is_empty() => {
                        values.push((name.clone(), percent_decode(part)));
                        j += 1;
                    }
                    Some(_) => return None,
                    None if *optional => {
                        if let Some(d) = default {
                            values.push((name.clone(), d.clone()));
                        }
                    }
                    None => return None,
                },
            }
        }
        (j == parts.len()).then_some(values)
    }

    /// Orders templates so that more specific ones are tried first: literals
    /// beat parameters, parameters beat optional ones, catch-alls come last.
    pub fn precedence(&self, other: &Self) -> Ordering {
        fn rank(s: &Segment) -> u8 {
            match s {
                Segment::Literal(_) => 0,
                Segment::Param { catch_all: true, .. } => 3,
                Segment::Param { optional: true, .. } => 2,
                Segment::Param { .. } => 1,
            }
        }
        for (a, b) in self.segments.iter().zip(other.segments.iter()) {
            match rank(a).cmp(&rank(b)) {
                Ordering::Equal => continue,
                o => return o,
            }
        }
        other.segments.len().cmp(&self.segments.len())
    }
}

fn parse_segment(text: &str) -> Result<Segment, String> {
    let Some(inner) = text.strip_prefix('{') else {
        if text.contains('{') || text.contains('}') {
            return Err(format!("segment '{text}' mixes text and parameters, which devhost does not support"));
        }
        return Ok(Segment::Literal(text.to_string()));
    };
    let inner = inner
        .strip_suffix('}')
        .ok_or_else(|| format!("segment '{text}' mixes text and parameters, which devhost does not support"))?;
    let (inner, catch_all) = match inner.strip_prefix("**").or_else(|| inner.strip_prefix('*')) {
        Some(rest) => (rest, true),
        None => (inner, false),
    };
    let (inner, default) = match inner.split_once('=') {
        Some((n, d)) => (n, Some(d.to_string())),
        None => (inner, None),
    };
    let (inner, optional) = match inner.strip_suffix('?') {
        Some(n) => (n, true),
        None => (inner, false),
    };
    // Constraints (`:int`, `:regex(...)`) are accepted and ignored locally.
    let name = inner.split(':').next().unwrap_or_default();
    // A constraint may itself end in `?`, as in `{id:int?}`.
    let optional = optional || default.is_some() || inner.ends_with('?');
    let name = name.trim_end_matches('?');
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Err(format!("invalid route parameter '{text}'"));
    }
    Ok(Segment::Param { name: name.to_string(), optional, default, catch_all })
}

/// Decodes `%XX` escapes in one path segment; malformed escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(v: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect())
    }

    #[test]
    fn literal_segments_match_case_insensitively() {
        let t = RouteTemplate::parse("api", "jobs").unwrap();
        assert_eq!(t.matches("/API/Jobs"), vals(&[]));
        assert_eq!(t.matches("/api/jobs/"), vals(&[]));
        assert_eq!(t.matches("/api/jobs/x"), None);
        assert!(!t.has_params());
    }

    #[test]
    fn parameters_capture_decoded_values_and_ignore_constraints() {
        let t = RouteTemplate::parse("api", "jobs/{id:int}/status").unwrap();
        assert_eq!(t.matches("/api/jobs/a%20b/status"), vals(&[("id", "a b")]));
        assert_eq!(t.display(), "api/jobs/{id}/status");
    }

    #[test]
    fn optional_parameters_may_be_missing() {
        let t = RouteTemplate::parse("api", "jobs/{id?}").unwrap();
        assert_eq!(t.matches("/api/jobs"), vals(&[]));
        assert_eq!(t.matches("/api/jobs/7"), vals(&[("id", "7")]));
        let d = RouteTemplate::parse("", "items/{page=1}").unwrap();
        assert_eq!(d.matches("/items"), vals(&[("page", "1")]));
    }

    #[test]
    fn catch_all_parameters_take_the_rest_of_the_path() {
        let t = RouteTemplate::parse("api", "files/{*path}").unwrap();
        assert_eq!(t.matches("/api/files/a/b.txt"), vals(&[("path", "a/b.txt")]));
    }

    #[test]
    fn an_empty_prefix_leaves_only_the_route() {
        let t = RouteTemplate::parse("", "GetJob").unwrap();
        assert_eq!(t.matches("/getjob"), vals(&[]));
        assert_eq!(t.matches("/api/getjob"), None);
    }

    #[test]
    fn literal_routes_take_precedence_over_parameters() {
        let lit = RouteTemplate::parse("api", "jobs/status").unwrap();
        let par = RouteTemplate::parse("api", "jobs/{id}").unwrap();
        assert_eq!(lit.precedence(&par), Ordering::Less);
    }

    #[test]
    fn malformed_templates_are_rejected() {
        assert!(RouteTemplate::parse("api", "jobs/x{id}").is_err());
        assert!(RouteTemplate::parse("api", "{id?}/jobs").is_err());
        assert!(RouteTemplate::parse("api", "{}").is_err());
    }
}
