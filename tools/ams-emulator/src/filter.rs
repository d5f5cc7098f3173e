//! The OData `$filter` subset that AMS accepts on job lists.
//!
//! Supported (per "Filtering, ordering, paging of Media Services entities"):
//! `name eq 'x'`, `properties/state eq|ne Microsoft.Media.JobState'X'` (state
//! literal case-insensitive), `properties/created` and `properties/lastModified`
//! with `gt|ge|lt|le` and a UTC datetime, combined with `and` / `or` (`and`
//! binds tighter) and optional parentheses. Anything else is rejected, as the
//! real service rejects it, so clients cannot come to depend on more.
//!
//! MK.IO's job lists take the same grammar plus `transform eq 'x'` and the
//! unprefixed `created` and `updated` (media-api.json, "Filters are valid on
//! the following fields"); [`Filter::parse_mkio`] accepts those too.

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::model::{Job, JobState};

/// Why a `$filter` was rejected; rendered as a 400 `BadRequest`.
#[derive(Debug, Error, PartialEq)]
pub enum FilterError {
    /// A quoted literal never closed.
    #[error("unterminated string literal in $filter")]
    Unterminated,
    /// The expression ended where more was expected.
    #[error("unexpected end of $filter")]
    UnexpectedEnd,
    /// A token that does not fit the grammar.
    #[error("unexpected token '{0}' in $filter")]
    Unexpected(String),
    /// A property the job list cannot be filtered on.
    #[error("the property '{0}' is not supported in $filter")]
    UnsupportedProperty(String),
    /// An operator the property does not support.
    #[error("the operator '{op}' is not supported for '{property}'")]
    UnsupportedOperator {
        /// Property name.
        property: String,
        /// Operator.
        op: String,
    },
    /// A literal that is not valid for the property.
    #[error("invalid value '{0}' in $filter")]
    InvalidValue(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Word(String),
    Str(String),
    /// `Prefix'value'`, e.g. `Microsoft.Media.JobState'Processing'`.
    Typed(String, String),
}

fn tokenize(input: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let read_quoted = |i: &mut usize| -> Result<String, FilterError> {
        // `*i` points at the opening quote; OData escapes a quote by doubling it.
        let mut s = String::new();
        *i += 1;
        loop {
            match chars.get(*i) {
                None => return Err(FilterError::Unterminated),
                Some('\'') if chars.get(*i + 1) == Some(&'\'') => {
                    s.push('\'');
                    *i += 2;
                }
                Some('\'') => {
                    *i += 1;
                    return Ok(s);
                }
                Some(c) => {
                    s.push(*c);
                    *i += 1;
                }
            }
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            tokens.push(Token::Open);
            i += 1;
        } else if c == ')' {
            tokens.push(Token::Close);
            i += 1;
        } else if c == '\'' {
            tokens.push(Token::Str(read_quoted(&mut i)?));
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !matches!(chars[i], '(' | ')' | '\'') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if chars.get(i) == Some(&'\'') {
                tokens.push(Token::Typed(word, read_quoted(&mut i)?));
            } else {
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// `eq`
    Eq,
    /// `ne`
    Ne,
    /// `gt`
    Gt,
    /// `ge`
    Ge,
    /// `lt`
    Lt,
    /// `le`
    Le,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return None,
        })
    }

    fn holds<T: PartialOrd>(self, left: &T, right: &T) -> bool {
        match self {
            Op::Eq => left == right,
            Op::Ne => left != right,
            Op::Gt => left > right,
            Op::Ge => left >= right,
            Op::Lt => left < right,
            Op::Le => left <= right,
        }
    }
}

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Both sides hold.
    And(Box<Filter>, Box<Filter>),
    /// Either side holds.
    Or(Box<Filter>, Box<Filter>),
    /// `name eq 'x'` (compared case-insensitively, as ARM names are).
    Name(String),
    /// `properties/state eq|ne ...`.
    State(Op, JobState),
    /// `properties/created <op> datetime`.
    Created(Op, DateTime<Utc>),
    /// `properties/lastModified <op> datetime`.
    LastModified(Op, DateTime<Utc>),
    /// `transform eq 'x'` (MK.IO only; compared case-insensitively).
    Transform(String),
}

/// Which service's `$filter` vocabulary applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// Azure Media Services.
    Ams,
    /// MK.IO: adds `transform`, `created` and `updated`.
    Mkio,
}

impl Filter {
    /// Parses a `$filter` value.
    pub fn parse(input: &str) -> Result<Filter, FilterError> {
        Filter::parse_dialect(input, Dialect::Ams)
    }

    /// Parses a `$filter` value of an MK.IO job list.
    pub fn parse_mkio(input: &str) -> Result<Filter, FilterError> {
        Filter::parse_dialect(input, Dialect::Mkio)
    }

    fn parse_dialect(input: &str, dialect: Dialect) -> Result<Filter, FilterError> {
        let tokens = tokenize(input)?;
        let mut parser = Parser { tokens, pos: 0, dialect };
        let f = parser.or_expr()?;
        match parser.tokens.get(parser.pos) {
            None => Ok(f),
            Some(t) => Err(FilterError::Unexpected(describe(t))),
        }
    }

    /// Whether a job satisfies the filter.
    pub fn matches(&self, job: &Job) -> bool {
        match self {
            Filter::And(a, b) => a.matches(job) && b.matches(job),
            Filter::Or(a, b) => a.matches(job) || b.matches(job),
            Filter::Name(n) => job.name.eq_ignore_ascii_case(n),
            Filter::State(op, s) => op.holds(&job.state, s),
            Filter::Created(op, t) => op.holds(&job.created, t),
            Filter::LastModified(op, t) => op.holds(&job.last_modified, t),
            Filter::Transform(t) => job.transform.eq_ignore_ascii_case(t),
        }
    }
}

fn describe(t: &Token) -> String {
    match t {
        Token::Open => "(".into(),
        Token::Close => ")".into(),
        Token::Word(w) => w.clone(),
        Token::Str(s) => format!("'{s}'"),
        Token::Typed(p, s) => format!("{p}'{s}'"),
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    dialect: Dialect,
}

impl Parser {
    fn next(&mut self) -> Result<Token, FilterError> {
        let t = self.tokens.get(self.pos).cloned().ok_or(FilterError::UnexpectedEnd)?;
        self.pos += 1;
        Ok(t)
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn or_expr(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and_expr()?;
        while self.peek_keyword("or") {
            self.pos += 1;
            let right = self.and_expr()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.primary()?;
        while self.peek_keyword("and") {
            self.pos += 1;
            let right = self.primary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Filter, FilterError> {
        match self.next()? {
            Token::Open => {
                let inner = self.or_expr()?;
                match self.next()? {
                    Token::Close => Ok(inner),
                    other => Err(FilterError::Unexpected(describe(&other))),
                }
            }
            Token::Word(property) => self.comparison(property),
            other => Err(FilterError::Unexpected(describe(&other))),
        }
    }

    fn comparison(&mut self, property: String) -> Result<Filter, FilterError> {
        let op_token = self.next()?;
        let op_text = match &op_token {
            Token::Word(w) => w.clone(),
            other => return Err(FilterError::Unexpected(describe(other))),
        };
        let op = Op::parse(&op_text).ok_or_else(|| FilterError::Unexpected(op_text.clone()))?;
        let value = self.next()?;
        let unsupported = || FilterError::UnsupportedOperator { property: property.clone(), op: op_text.clone() };
        let lower = property.to_ascii_lowercase();
        // MK.IO names the record's own times without the `properties/` prefix.
        let key = match (self.dialect, lower.as_str()) {
            (Dialect::Mkio, "created") => "properties/created",
            (Dialect::Mkio, "updated") => "properties/lastmodified",
            (_, other) => other,
        };
        match key {
            "transform" if self.dialect == Dialect::Mkio => {
                if op != Op::Eq {
                    return Err(unsupported());
                }
                match value {
                    Token::Str(s) => Ok(Filter::Transform(s)),
                    other => Err(FilterError::InvalidValue(describe(&other))),
                }
            }
            "name" => {
                if op != Op::Eq {
                    return Err(unsupported());
                }
                match value {
                    Token::Str(s) => Ok(Filter::Name(s)),
                    other => Err(FilterError::InvalidValue(describe(&other))),
                }
            }
            "properties/state" => {
                if !matches!(op, Op::Eq | Op::Ne) {
                    return Err(unsupported());
                }
                let literal = match &value {
                    Token::Typed(prefix, s) if prefix.eq_ignore_ascii_case("Microsoft.Media.JobState") => s,
                    // Lenient: a bare quoted state is unambiguous too.
                    Token::Str(s) => s,
                    other => return Err(FilterError::InvalidValue(describe(other))),
                };
                let state =
                    JobState::parse_loose(literal).ok_or_else(|| FilterError::InvalidValue(describe(&value)))?;
                Ok(Filter::State(op, state))
            }
            p @ ("properties/created" | "properties/lastmodified") => {
                if matches!(op, Op::Eq | Op::Ne) {
                    return Err(unsupported());
                }
                let text = match &value {
                    Token::Word(w) | Token::Str(w) => w.clone(),
                    Token::Typed(prefix, s) if prefix.eq_ignore_ascii_case("datetime") => s.clone(),
                    other => return Err(FilterError::InvalidValue(describe(other))),
                };
                let t = DateTime::parse_from_rfc3339(&text)
                    .map_err(|_| FilterError::InvalidValue(text.clone()))?
                    .with_timezone(&Utc);
                Ok(if p == "properties/created" { Filter::Created(op, t) } else { Filter::LastModified(op, t) })
            }
            _ => Err(FilterError::UnsupportedProperty(property)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn job(name: &str, state: JobState, minute: u32) -> Job {
        let t = Utc.with_ymd_and_hms(2021, 6, 1, 0, minute, 0).unwrap();
        Job { state, history: vec![], ..Job::queued("t", name, t) }
    }

    #[test]
    fn a_state_literal_matches_case_insensitively() {
        let f = Filter::parse("properties/state eq Microsoft.Media.JobState'finished'").unwrap();
        assert_eq!(f, Filter::State(Op::Eq, JobState::Finished));
        assert!(f.matches(&job("a", JobState::Finished, 0)));
        assert!(!f.matches(&job("a", JobState::Processing, 0)));
    }

    #[test]
    fn ne_excludes_the_state() {
        let f = Filter::parse("properties/state ne Microsoft.Media.JobState'Finished'").unwrap();
        assert!(f.matches(&job("a", JobState::Queued, 0)));
        assert!(!f.matches(&job("a", JobState::Finished, 0)));
    }

    #[test]
    fn name_and_state_combine_with_and() {
        let f = Filter::parse("name eq 'job3' and properties/state eq Microsoft.Media.JobState'finished'").unwrap();
        assert!(f.matches(&job("job3", JobState::Finished, 0)));
        assert!(f.matches(&job("JOB3", JobState::Finished, 0)));
        assert!(!f.matches(&job("job4", JobState::Finished, 0)));
        assert!(!f.matches(&job("job3", JobState::Error, 0)));
    }

    #[test]
    fn and_binds_tighter_than_or() {
        // a or (b and c)
        let f = Filter::parse("name eq 'a' or name eq 'b' and properties/state eq Microsoft.Media.JobState'Error'")
            .unwrap();
        assert!(f.matches(&job("a", JobState::Finished, 0)));
        assert!(!f.matches(&job("b", JobState::Finished, 0)));
        assert!(f.matches(&job("b", JobState::Error, 0)));
    }

    #[test]
    fn either_state_matches_with_or() {
        let f = Filter::parse(
            "properties/state eq Microsoft.Media.JobState'Scheduled' or properties/state eq Microsoft.Media.JobState'Processing'",
        )
        .unwrap();
        assert!(f.matches(&job("a", JobState::Scheduled, 0)));
        assert!(f.matches(&job("a", JobState::Processing, 0)));
        assert!(!f.matches(&job("a", JobState::Queued, 0)));
    }

    #[test]
    fn parentheses_group_subexpressions() {
        let f = Filter::parse("(name eq 'a' or name eq 'b') and properties/state eq Microsoft.Media.JobState'Error'")
            .unwrap();
        assert!(!f.matches(&job("a", JobState::Finished, 0)));
        assert!(f.matches(&job("a", JobState::Error, 0)));
    }

    #[test]
    fn time_ranges_on_last_modified_work() {
        let f = Filter::parse(
            "properties/lastmodified ge 2021-06-01T00:00:10.0000000Z and properties/lastmodified le 2021-06-01T00:20:00.0000000Z",
        )
        .unwrap();
        assert!(!f.matches(&job("a", JobState::Queued, 0)));
        assert!(f.matches(&job("a", JobState::Queued, 10)));
        assert!(!f.matches(&job("a", JobState::Queued, 30)));
    }

    #[test]
    fn doubled_quotes_escape_a_quote_in_names() {
        let f = Filter::parse("name eq 'it''s'").unwrap();
        assert_eq!(f, Filter::Name("it's".into()));
    }

    #[test]
    fn mkio_filters_also_take_transform_and_unprefixed_times() {
        let f = Filter::parse_mkio("transform eq 'T' and created ge 2021-06-01T00:05:00Z").unwrap();
        assert!(f.matches(&job("a", JobState::Queued, 10)));
        assert!(!f.matches(&job("a", JobState::Queued, 0)));
        assert!(Filter::parse_mkio("updated lt 2021-06-01T00:05:00Z").unwrap().matches(&job("a", JobState::Queued, 0)));
        assert!(matches!(Filter::parse("transform eq 't'"), Err(FilterError::UnsupportedProperty(_))));
        assert!(matches!(Filter::parse("created ge 2021-06-01T00:05:00Z"), Err(FilterError::UnsupportedProperty(_))));
    }

    #[test]
    fn malformed_filters_are_rejected() {
        assert_eq!(Filter::parse("name eq 'x"), Err(FilterError::Unterminated));
        assert_eq!(Filter::parse("name eq"), Err(FilterError::UnexpectedEnd));
        assert!(matches!(Filter::parse("properties/priority eq 'High'"), Err(FilterError::UnsupportedProperty(_))));
        assert!(matches!(Filter::parse("name ne 'x'"), Err(FilterError::UnsupportedOperator { .. })));
        assert!(matches!(
            Filter::parse("properties/state gt Microsoft.Media.JobState'Queued'"),
            Err(FilterError::UnsupportedOperator { .. })
        ));
        assert!(matches!(
            Filter::parse("properties/state eq Microsoft.Media.JobState'Done'"),
            Err(FilterError::InvalidValue(_))
        ));
        assert!(matches!(Filter::parse("name eq 'a' name eq 'b'"), Err(FilterError::Unexpected(_))));
    }
}
