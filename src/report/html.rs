//! Markup in which text from the data can only ever be text: the one way `report.html` and
//! `batch_report.html` are written.
//!
//! [`Html`] is a markup buffer. Element and attribute names are `&'static str`, the
//! project's own. Attribute values and text are escaped where they are inserted (`&`, `<`,
//! `>`, `"` and `'` as character references; control characters, noncharacters and the
//! bidirectional embedding, override and isolate controls as U+FFFD), whatever their type,
//! since they are written through [`std::fmt::Display`] into an escaping writer. Markup enters
//! unescaped only as a `&'static str` through [`Html::raw`]: the project's own constant
//! fragments, never text read from a file. Identifiers derived from data (the `data-plot`
//! keys) go through [`ident`], which keeps `[A-Za-z0-9_-]` only.

use std::fmt::{self, Display, Write};

/// The Content-Security-Policy of every report: nothing is loaded from anywhere (images only
/// as `data:` URLs, styles only inline), no script runs, no form submits, no `<base>` moves
/// relative links. (`frame-ancestors` is ignored in a `<meta>` element; `default-src 'none'`
/// already forbids frames and objects inside the page.)
pub(crate) const CSP: &str = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'none'; form-action 'none'; base-uri 'none'";

/// Attribute list of an element: (name, value); values are escaped when written.
pub(crate) type Attrs<'a> = &'a [(&'static str, &'a dyn Display)];

/// A markup buffer (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Html(String);

/// A number written with a fixed count of decimals (`Num(1.25, 1)` is `1.2`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Num(pub f64, pub usize);

impl Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.*}", self.1, self.0)
    }
}

/// Characters that never reach a report as they are: C0 and C1 controls other than tab and
/// line breaks, noncharacters, and the bidirectional embedding, override and isolate controls
/// (a U+202E in a sample name would otherwise reverse the text that follows it on screen).
fn replaced(c: char) -> bool {
    let u = u32::from(c);
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        || (0xFDD0..=0xFDEF).contains(&u)
        || u & 0xFFFE == 0xFFFE
        || (0x202A..=0x202E).contains(&u)
        || (0x2066..=0x2069).contains(&u)
}

/// Appends `s` to `out` escaped for text and quoted attribute values alike.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if replaced(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// A writer that escapes everything written through it.
struct Escaping<'a>(&'a mut String);

impl Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// An identifier derived from data (a `data-plot` key) in the alphabet `[A-Za-z0-9_-]`: other
/// characters become `_`, at most 64 of them are kept, and when anything was changed a hash
/// of the original follows, so that different names stay different identifiers.
pub(crate) fn ident(s: &str) -> String {
    let clean: String = s
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == s && !s.is_empty() {
        clean
    } else {
        // FNV-1a: stable across platforms and releases.
        let hash = s.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        format!("{clean}-{hash:08x}")
    }
}

/// A relative link to a file below the page's folder: each path segment percent-encoded
/// outside `[A-Za-z0-9._~+-]`, so the link can hold no scheme, query or fragment and cannot
/// climb out of the folder.
pub(crate) fn relative_href(segments: &[&str]) -> String {
    let mut out = String::new();
    for (k, seg) in segments.iter().enumerate() {
        if k > 0 {
            out.push('/');
        }
        if matches!(*seg, "" | "." | "..") {
            out.push('_');
            continue;
        }
        for b in seg.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'+' | b'-') {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Html {
    /// An empty buffer.
    pub(crate) fn new() -> Html {
        Html(String::new())
    }

    /// The project's own constant markup, written as it is.
    pub(crate) fn raw(&mut self, markup: &'static str) -> &mut Html {
        self.0.push_str(markup);
        self
    }

    /// Text, escaped.
    pub(crate) fn text(&mut self, text: impl Display) -> &mut Html {
        let _ = write!(Escaping(&mut self.0), "{text}");
        self
    }

    fn tag(&mut self, name: &'static str, attrs: Attrs<'_>) {
        debug_assert!(is_name(name), "element name {name:?}");
        self.0.push('<');
        self.0.push_str(name);
        for (attr, value) in attrs {
            debug_assert!(is_name(attr), "attribute name {attr:?}");
            self.0.push(' ');
            self.0.push_str(attr);
            self.0.push_str("=\"");
            let _ = write!(Escaping(&mut self.0), "{value}");
            self.0.push('"');
        }
    }

    /// A start tag with its attributes.
    pub(crate) fn open(&mut self, name: &'static str, attrs: Attrs<'_>) -> &mut Html {
        self.tag(name, attrs);
        self.0.push('>');
        self
    }

    /// An end tag.
    pub(crate) fn close(&mut self, name: &'static str) -> &mut Html {
        debug_assert!(is_name(name), "element name {name:?}");
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push('>');
        self
    }

    /// An element without content (`<circle .../>`, `<meta .../>`).
    pub(crate) fn empty(&mut self, name: &'static str, attrs: Attrs<'_>) -> &mut Html {
        self.tag(name, attrs);
        self.0.push_str("/>");
        self
    }

    /// An element holding `text` (escaped).
    pub(crate) fn elem(
        &mut self,
        name: &'static str,
        attrs: Attrs<'_>,
        text: impl Display,
    ) -> &mut Html {
        self.open(name, attrs).text(text).close(name)
    }

    /// Appends markup built by another [`Html`].
    pub(crate) fn append(&mut self, other: &Html) -> &mut Html {
        self.0.push_str(&other.0);
        self
    }

    /// The markup as a string.
    pub(crate) fn into_string(self) -> String {
        self.0
    }
}

/// A whole page: doctype, `<head>` with the charset, the [`CSP`], the title and the style
/// sheet, then `body` in `<body>`.
pub(crate) fn page(title: &str, style: &'static str, body: &Html) -> String {
    let mut h = Html::new();
    h.raw("<!DOCTYPE html>")
        .open("html", &[("lang", &"en")])
        .open("head", &[])
        .empty("meta", &[("charset", &"utf-8")])
        .empty(
            "meta",
            &[
                ("http-equiv", &"Content-Security-Policy"),
                ("content", &CSP),
            ],
        )
        .empty(
            "meta",
            &[("name", &"referrer"), ("content", &"no-referrer")],
        )
        .elem("title", &[], title)
        .open("style", &[])
        .raw(style)
        .close("style")
        .close("head")
        .open("body", &[])
        .append(body)
        .close("body")
        .close("html")
        .raw("\n");
    h.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes_are_escaped_whatever_they_hold() {
        let hostile =
            "x\" onmouseover='alert(1)' <script>&</svg>\u{202E}\u{0}\u{7}\u{9F}\u{FFFF}\t";
        let mut h = Html::new();
        h.elem("td", &[("data-plot", &hostile)], hostile);
        let want = "x&quot; onmouseover=&#39;alert(1)&#39; &lt;script&gt;&amp;&lt;/svg&gt;\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\t";
        assert_eq!(
            h.into_string(),
            format!("<td data-plot=\"{want}\">{want}</td>")
        );
        // Numbers and other Display values go through the same writer.
        let mut h = Html::new();
        h.empty("circle", &[("cx", &Num(1.25, 1)), ("r", &3)]);
        assert_eq!(h.into_string(), "<circle cx=\"1.2\" r=\"3\"/>");
    }

    #[test]
    fn identifiers_keep_a_safe_alphabet_and_stay_distinct() {
        assert_eq!(ident("phenotypes_P01-a"), "phenotypes_P01-a");
        let a = ident("phenotypes_x\" onmouseover=\"alert(1)");
        let b = ident("phenotypes_x' onmouseover='alert(1)");
        for id in [&a, &b, &ident(""), &ident(&"é".repeat(10_000))] {
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'),
                "{id}"
            );
            assert!(!id.is_empty() && id.len() <= 64 + 9, "{id}");
        }
        assert_ne!(a, b);
    }

    #[test]
    fn relative_links_cannot_leave_the_folder_or_name_a_scheme() {
        assert_eq!(
            relative_href(&["samples", "P01+d0", "report.html"]),
            "samples/P01+d0/report.html"
        );
        assert_eq!(
            relative_href(&["javascript:alert(1)", "..", "a b"]),
            "javascript%3Aalert%281%29/_/a%20b"
        );
    }

    #[test]
    fn a_page_carries_the_content_security_policy() {
        let mut body = Html::new();
        body.elem("p", &[], "<b>");
        let p = page("t</title><script>", "p{}", &body);
        assert!(p.starts_with("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"/>"));
        assert!(p.contains(&format!(
            "<meta http-equiv=\"Content-Security-Policy\" content=\"{}\"/>",
            CSP.replace('\'', "&#39;")
        )));
        assert!(p.contains("<title>t&lt;/title&gt;&lt;script&gt;</title>"));
        assert!(p.contains("<body><p>&lt;b&gt;</p></body>"));
    }
}
