//! CSV as RFC 4180 has it: the record splitter of every table cartscope reads (10x and AIRR
//! contig tables, a sample's summary.csv), and the one field-quoting rule of every CSV it writes.
//!
//! Reading: fields are separated by one delimiter byte; a field that starts with `"` is quoted and may
//! hold delimiters, line breaks and doubled quotes (`""` for one `"`); any other field runs to
//! the next delimiter or line end and is taken literally (a `"` inside it is an ordinary
//! character, as Python's `csv` and pandas read it). Lines end with `\n` or `\r\n`; blank
//! lines are skipped, as pandas and `csv.DictReader` skip them. Records borrow from the text
//! unless a field holds a doubled quote.
//!
//! Writing: a field that holds a comma, a double quote, a carriage return or a line feed is
//! written between double quotes with its quotes doubled; any other field as it is. Fields are
//! never altered otherwise, so a table reads back to the same strings (a spreadsheet program
//! may still interpret a field that starts with `=`, `+`, `-` or `@` as a formula when the
//! file is opened rather than imported as text: see docs/outputs.md).

use std::borrow::Cow;

/// `s` as one field of a CSV record (see the module documentation).
pub(crate) fn field(s: &str) -> Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

/// One CSV record: each field quoted as needed, joined by commas, ended by a line feed.
pub(crate) fn record<S: AsRef<str>>(fields: impl IntoIterator<Item = S>) -> String {
    let mut out = String::new();
    for (k, f) in fields.into_iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        out.push_str(&field(f.as_ref()));
    }
    out.push('\n');
    out
}

/// One record and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    /// The line of the record's first character.
    pub line: usize,
    /// The fields, unquoted.
    pub fields: Vec<Cow<'a, str>>,
}

/// A malformed record: the line it starts on and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SplitError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// The records of `text`, split at `delim`.
pub(crate) struct Records<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    delim: u8,
}

impl<'a> Records<'a> {
    /// Splits `text` (a leading byte-order mark is skipped) into records at `delim`.
    pub fn new(text: &'a str, delim: u8) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Records {
            text,
            pos: 0,
            line: 1,
            delim,
        }
    }

    /// A quoted field starting at `self.pos` (on the opening quote).
    fn quoted(&mut self) -> Result<Cow<'a, str>, SplitError> {
        let bytes = self.text.as_bytes();
        let start_line = self.line;
        let start = self.pos + 1;
        let mut i = start;
        let mut owned: Option<String> = None;
        let mut piece = start;
        loop {
            match bytes.get(i) {
                None => {
                    return Err(SplitError {
                        line: start_line,
                        message: "unterminated quoted field".into(),
                    });
                }
                Some(b'"') if bytes.get(i + 1) == Some(&b'"') => {
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(&self.text[piece..=i]);
                    i += 2;
                    piece = i;
                }
                Some(b'"') => break,
                Some(b'\n') => {
                    self.line += 1;
                    i += 1;
                }
                Some(_) => i += 1,
            }
        }
        let field = match owned {
            Some(mut s) => {
                s.push_str(&self.text[piece..i]);
                Cow::Owned(s)
            }
            None => Cow::Borrowed(&self.text[start..i]),
        };
        self.pos = i + 1;
        match bytes.get(self.pos) {
            None | Some(b'\n') => Ok(field),
            Some(&b) if b == self.delim => Ok(field),
            Some(b'\r') if matches!(bytes.get(self.pos + 1), None | Some(b'\n')) => Ok(field),
            Some(_) => Err(SplitError {
                line: self.line,
                message: "text after the closing quote of a quoted field".into(),
            }),
        }
    }

    /// An unquoted field starting at `self.pos`.
    fn plain(&mut self) -> Cow<'a, str> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let mut i = start;
        while i < bytes.len() && bytes[i] != self.delim && bytes[i] != b'\n' {
            i += 1;
        }
        self.pos = i;
        let mut end = i;
        if end > start && bytes[end - 1] == b'\r' && (i == bytes.len() || bytes[i] == b'\n') {
            end -= 1;
        }
        Cow::Borrowed(&self.text[start..end])
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, SplitError>;

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.text.as_bytes();
        loop {
            if self.pos >= bytes.len() {
                return None;
            }
            let line = self.line;
            let mut fields = Vec::new();
            loop {
                let field = if bytes.get(self.pos) == Some(&b'"') {
                    match self.quoted() {
                        Ok(f) => f,
                        Err(e) => {
                            self.pos = bytes.len();
                            return Some(Err(e));
                        }
                    }
                } else {
                    self.plain()
                };
                fields.push(field);
                match bytes.get(self.pos) {
                    Some(&b) if b == self.delim => self.pos += 1,
                    Some(b'\r') => {
                        // "\r" alone after a quoted field ends the record.
                        self.pos += 1;
                        if bytes.get(self.pos) == Some(&b'\n') {
                            self.pos += 1;
                        }
                        self.line += 1;
                        break;
                    }
                    Some(b'\n') => {
                        self.pos += 1;
                        self.line += 1;
                        break;
                    }
                    _ => break,
                }
            }
            let blank = fields.len() == 1 && fields[0].is_empty();
            if !blank {
                return Some(Ok(Record { line, fields }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str, delim: u8) -> Vec<(usize, Vec<String>)> {
        Records::new(text, delim)
            .map(|r| {
                let r = r.unwrap();
                (r.line, r.fields.iter().map(|f| f.to_string()).collect())
            })
            .collect()
    }

    #[test]
    fn plain_fields_and_line_numbers() {
        let got = split("a,b,c\n1,,3\n\n4,5,6", b',');
        assert_eq!(
            got,
            vec![
                (1, vec!["a".into(), "b".into(), "c".into()]),
                (2, vec!["1".into(), "".into(), "3".into()]),
                (4, vec!["4".into(), "5".into(), "6".into()]),
            ]
        );
    }

    #[test]
    fn quoted_fields_with_delimiters_quotes_and_newlines() {
        let got = split(
            "x,\"a,b\",\"say \"\"hi\"\"\"\n\"two\nlines\",y,\"\"\nz,w,v\n",
            b',',
        );
        assert_eq!(got[0].1, vec!["x", "a,b", "say \"hi\""]);
        assert_eq!(
            got[1],
            (2, vec!["two\nlines".into(), "y".into(), "".into()])
        );
        assert_eq!(got[2], (4, vec!["z".into(), "w".into(), "v".into()]));
        // Borrowed unless a doubled quote had to be collapsed.
        let r = Records::new("\"a,b\",\"c\"\"d\"", b',')
            .next()
            .unwrap()
            .unwrap();
        assert!(matches!(r.fields[0], Cow::Borrowed("a,b")));
        assert!(matches!(r.fields[1], Cow::Owned(_)));
    }

    #[test]
    fn crlf_tabs_bom_and_trailing_empty_field() {
        let got = split("\u{feff}a\tb\r\n1\t\r\n\"q\"\t2\r\n", b'\t');
        assert_eq!(got[0].1, vec!["a", "b"]);
        assert_eq!(got[1].1, vec!["1", ""]);
        assert_eq!(got[2].1, vec!["q", "2"]);
        assert_eq!(got.len(), 3);
        // A comma is an ordinary character in a TSV; a stray quote inside a field is literal.
        assert_eq!(split("a,b\tc\"d", b'\t')[0].1, vec!["a,b", "c\"d"]);
    }

    #[test]
    fn malformed_quotes_are_errors_with_their_line() {
        let e = Records::new("a,b\n\"open,c\nd", b',')
            .nth(1)
            .unwrap()
            .unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unterminated"));
        let e = Records::new("\"a\"b,c", b',').next().unwrap().unwrap_err();
        assert!(e.message.contains("after the closing quote"));
    }

    #[test]
    fn written_records_read_back_to_the_same_fields() {
        let hostile = [
            "plain",
            "a,b",
            "say \"hi\"",
            "\"",
            "two\nlines",
            "cr\ronly",
            "crlf\r\n",
            "=HYPERLINK(\"http://x\",\"y\")",
            "+1",
            "-1",
            "@SUM(A1)",
            " lead",
            "",
            "\u{202e}rtl",
        ];
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        // Formula-like fields are data: written as they are, not altered.
        assert_eq!(field("=1+1"), "=1+1");
        let text = record(["h"; 14]) + &record(hostile) + &record(hostile.iter().rev());
        let rows = split(&text, b',');
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].1, hostile);
        let reversed: Vec<&str> = hostile.iter().rev().copied().collect();
        assert_eq!(rows[2].1, reversed);
    }
}
