//! Strict JSON, as Python's `json` reads it for `orderbook/venues/binance.py`: one pass over the
//! bytes into a flat tape of nodes whose strings stay spans of the input (decoded only when read).
//!
//! Why not a crate: the Binance rules need what a general parser's output loses or pays for:
//! integers kept apart from floats (`_int` refuses 1.0), duplicate keys resolved last-wins
//! (a Python dict), strings left undecoded (most are prices that are parsed once, from bytes),
//! and no allocation per string or per message (the tape is reused). What Python's json refuses,
//! this refuses: bad UTF-8, a BOM, control characters in strings, bad escapes, NaN and Infinity
//! (`binance._reject_constant`), trailing commas, leading zeros, trailing data.
//!
//! An integer outside int64 (the event columns' type) is `Big`, which every Binance field refuses, as
//! `binance._int` and `numbers.parse_fixed` do. Documented differences: nesting deeper than
//! `MAX_DEPTH` is refused where Python's limit is its recursion limit; a string holding a lone
//! surrogate (`"\ud800"`) cannot be a Rust string and is refused where it is read.

use std::borrow::Cow;

pub const MAX_DEPTH: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    /// an integer outside int64
    Big,
    Float,
    /// a number kept as its text (`Tape::parse_numbers_as_text`), as `json.loads(parse_float=str,
    /// parse_int=str)` gives it
    Num {
        start: u32,
        end: u32,
    },
    /// the bytes between the quotes; `escaped` if any backslash is among them
    Str {
        start: u32,
        end: u32,
        escaped: bool,
    },
    /// `end`: the index after the container's last descendant
    Arr {
        end: u32,
    },
    Obj {
        end: u32,
    },
}

/// A parsed message: node 0 is the top value, containers' children follow them in order
/// (an object's as key, value, key, value...).
#[derive(Default)]
pub struct Tape {
    pub nodes: Vec<Node>,
}

pub struct Doc<'a> {
    pub src: &'a [u8],
    pub nodes: &'a [Node],
}

struct Parser<'a, 't> {
    src: &'a [u8],
    pos: usize,
    nodes: &'t mut Vec<Node>,
    numbers_as_text: bool,
}

type R<T> = Result<T, ()>;

impl Tape {
    /// Parse `src` into this tape (its nodes replaced); Err: not JSON as Python reads it.
    pub fn parse<'a>(&'a mut self, src: &'a [u8]) -> R<Doc<'a>> {
        self.parse_with(src, false)
    }

    /// `parse`, every number a `Num` of its text (Kraken prints prices as JSON numbers: no float may
    /// touch them).
    pub fn parse_numbers_as_text<'a>(&'a mut self, src: &'a [u8]) -> R<Doc<'a>> {
        self.parse_with(src, true)
    }

    fn parse_with<'a>(&'a mut self, src: &'a [u8], numbers_as_text: bool) -> R<Doc<'a>> {
        std::str::from_utf8(src).map_err(|_| ())?;
        self.nodes.clear();
        let mut p = Parser { src, pos: 0, nodes: &mut self.nodes, numbers_as_text };
        p.ws();
        p.value(0)?;
        p.ws();
        if p.pos != src.len() {
            return Err(());
        }
        Ok(Doc { src, nodes: &self.nodes })
    }
}

impl Parser<'_, '_> {
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.src.get(self.pos) {
            self.pos += 1;
        }
    }

    #[inline]
    fn peek(&self) -> R<u8> {
        self.src.get(self.pos).copied().ok_or(())
    }

    fn literal(&mut self, word: &[u8], node: Node) -> R<()> {
        if self.src[self.pos..].starts_with(word) {
            self.pos += word.len();
            self.nodes.push(node);
            Ok(())
        } else {
            Err(())
        }
    }

    fn value(&mut self, depth: usize) -> R<()> {
        match self.peek()? {
            b'"' => self.string(),
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b't' => self.literal(b"true", Node::Bool(true)),
            b'f' => self.literal(b"false", Node::Bool(false)),
            b'n' => self.literal(b"null", Node::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(()), // NaN, Infinity and anything else
        }
    }

    fn container(&mut self, depth: usize, close: u8, object: bool) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(());
        }
        let at = self.nodes.len();
        self.nodes.push(Node::Null); // its end is known once its children are in
        self.pos += 1;
        self.ws();
        if self.peek()? == close {
            self.pos += 1;
        } else {
            loop {
                self.ws();
                if object {
                    if self.peek()? != b'"' {
                        return Err(());
                    }
                    self.string()?;
                    self.ws();
                    if self.peek()? != b':' {
                        return Err(());
                    }
                    self.pos += 1;
                    self.ws();
                }
                self.value(depth)?;
                self.ws();
                match self.peek()? {
                    b',' => self.pos += 1,
                    c if c == close => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(()),
                }
            }
        }
        let end = self.nodes.len() as u32;
        self.nodes[at] = if object { Node::Obj { end } } else { Node::Arr { end } };
        Ok(())
    }

    fn object(&mut self, depth: usize) -> R<()> {
        self.container(depth, b'}', true)
    }

    fn array(&mut self, depth: usize) -> R<()> {
        self.container(depth, b']', false)
    }

    fn string(&mut self) -> R<()> {
        let start = self.pos + 1;
        let mut i = start;
        let mut escaped = false;
        let src = self.src;
        loop {
            match *src.get(i).ok_or(())? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    match *src.get(i + 1).ok_or(())? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                        b'u' => {
                            let hex = src.get(i + 2..i + 6).ok_or(())?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(());
                            }
                            i += 6;
                        }
                        _ => return Err(()),
                    }
                }
                c if c < 0x20 => return Err(()), // json's strict mode: no raw control characters
                _ => i += 1,
            }
        }
        self.nodes.push(Node::Str { start: start as u32, end: i as u32, escaped });
        self.pos = i + 1;
        Ok(())
    }

    fn number(&mut self) -> R<()> {
        let src = self.src;
        let start = self.pos;
        let mut i = start;
        let negative = src[i] == b'-';
        if negative {
            i += 1;
        }
        let int_start = i;
        match src.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(src, i)?,
            _ => return Err(()), // "-" alone, "-Infinity"
        }
        let int_end = i;
        let mut float = false;
        if src.get(i) == Some(&b'.') {
            i = digits(src, i + 1)?;
            float = true;
        }
        if let Some(b'e' | b'E') = src.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = src.get(i) {
                i += 1;
            }
            i = digits(src, i)?;
            float = true;
        }
        self.pos = i;
        let node = if self.numbers_as_text {
            Node::Num { start: start as u32, end: i as u32 }
        } else if float {
            Node::Float
        } else {
            let mut v: i64 = 0;
            let mut big = false;
            for &d in &src[int_start..int_end] {
                match v.checked_mul(10).and_then(|v| v.checked_add(i64::from(d - b'0'))) {
                    Some(n) => v = n,
                    None => {
                        big = true;
                        break;
                    }
                }
            }
            if big {
                Node::Big
            } else if negative {
                Node::Int(-v)
            } else {
                Node::Int(v)
            }
        };
        self.nodes.push(node);
        Ok(())
    }
}

/// One or more ASCII digits from `i`: the index after them (a fraction or exponent needs one).
fn digits(src: &[u8], mut i: usize) -> R<usize> {
    if !matches!(src.get(i), Some(b'0'..=b'9')) {
        return Err(());
    }
    while let Some(b'0'..=b'9') = src.get(i) {
        i += 1;
    }
    Ok(i)
}

/// A lone surrogate escape: a Python str may hold one, a Rust string cannot.
#[derive(Debug)]
pub struct LoneSurrogate;

impl<'a> Doc<'a> {
    /// The index after node `i` and its descendants: its next sibling.
    #[inline]
    pub fn skip(&self, i: usize) -> usize {
        match self.nodes[i] {
            Node::Arr { end } | Node::Obj { end } => end as usize,
            _ => i + 1,
        }
    }

    /// The children of the container at `i`.
    pub fn items(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let end = self.skip(i);
        let mut at = i + 1;
        std::iter::from_fn(move || {
            (at < end).then(|| {
                let item = at;
                at = self.skip(at);
                item
            })
        })
    }

    /// The value of `key` in the object at `obj` (the last one, as a Python dict keeps).
    pub fn get(&self, obj: usize, key: &str) -> Option<usize> {
        self.pairs(obj).filter(|&(k, _)| self.key_is(k, key)).last().map(|(_, v)| v)
    }

    /// The (key, value) node pairs of the object at `obj`, in order.
    pub fn pairs(&self, obj: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut children = self.items(obj); // an object's children alternate key, value
        std::iter::from_fn(move || Some((children.next()?, children.next()?)))
    }

    fn key_is(&self, i: usize, key: &str) -> bool {
        match self.nodes[i] {
            Node::Str { start, end, escaped: false } => {
                // keys are a few bytes: a length test and a loop beat a call to memcmp
                let raw = &self.src[start as usize..end as usize];
                raw.len() == key.len() && raw.iter().zip(key.as_bytes()).all(|(a, b)| a == b)
            }
            Node::Str { .. } => self.string(i).is_ok_and(|s| s.as_deref() == Some(key)),
            _ => false,
        }
    }

    /// The raw bytes between a string's quotes, None for other nodes.
    #[inline]
    pub fn raw_str(&self, i: usize) -> Option<(&'a [u8], bool)> {
        match self.nodes[i] {
            Node::Str { start, end, escaped } => Some((&self.src[start as usize..end as usize], escaped)),
            _ => None,
        }
    }

    /// A string node's value, decoded; Ok(None) for other nodes.
    pub fn string(&self, i: usize) -> Result<Option<Cow<'a, str>>, LoneSurrogate> {
        let Some((raw, escaped)) = self.raw_str(i) else {
            return Ok(None);
        };
        // the whole message was checked as UTF-8, and a string's span starts and ends at quotes
        let text = std::str::from_utf8(raw).map_err(|_| LoneSurrogate)?;
        if !escaped {
            return Ok(Some(Cow::Borrowed(text)));
        }
        unescape(raw, false).map(|s| Some(Cow::Owned(s)))
    }

    /// A value an error names, as the Python decoders word it (`orderbook.errors.shown`): a
    /// printable-ASCII string (or a number's text) JSON-quoted and cut at 40 characters, `None`
    /// where absent or null, else its Python type.
    pub fn shown(&self, i: Option<usize>) -> String {
        let Some(i) = i else { return "None".into() };
        match self.nodes[i] {
            Node::Null => "None".into(),
            Node::Bool(_) => "<bool>".into(),
            Node::Int(_) | Node::Big => "<int>".into(),
            Node::Float => "<float>".into(),
            Node::Arr { .. } => "<list>".into(),
            Node::Obj { .. } => "<dict>".into(),
            Node::Str { .. } | Node::Num { .. } => match self.text(i) {
                Some((s, true)) if s.bytes().all(|b| (0x20..=0x7e).contains(&b)) => {
                    let quoted = format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
                    quoted.chars().take(40).collect()
                }
                _ => "<str>".into(),
            },
        }
    }

    /// What Python holds as a str where numbers are kept as text: a string's value or a `Num`'s text,
    /// and whether it is exact (false: a lone surrogate, which a Rust string cannot hold, is U+FFFD
    /// here; it stays one character, and no ASCII text compares equal to it either way). None for
    /// other nodes.
    pub fn text(&self, i: usize) -> Option<(Cow<'a, str>, bool)> {
        match self.nodes[i] {
            Node::Num { start, end } => {
                let digits = std::str::from_utf8(&self.src[start as usize..end as usize]).expect("ASCII");
                Some((Cow::Borrowed(digits), true))
            }
            Node::Str { start, end, escaped } => {
                let raw = &self.src[start as usize..end as usize];
                let text = std::str::from_utf8(raw).expect("the message was checked as UTF-8");
                if !escaped {
                    return Some((Cow::Borrowed(text), true));
                }
                match unescape(raw, false) {
                    Ok(s) => Some((Cow::Owned(s), true)),
                    Err(LoneSurrogate) => Some((Cow::Owned(unescape(raw, true).expect("lossy")), false)),
                }
            }
            _ => None,
        }
    }
}

fn hex4(b: &[u8]) -> u32 {
    b.iter().fold(0, |v, &c| v * 16 + (c as char).to_digit(16).unwrap_or(0))
}

/// A string's escapes decoded; a lone surrogate is an error, or U+FFFD where `lossy`.
fn unescape(raw: &[u8], lossy: bool) -> Result<String, LoneSurrogate> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            let next = raw[i..].iter().position(|&c| c == b'\\').map_or(raw.len(), |p| i + p);
            out.push_str(std::str::from_utf8(&raw[i..next]).map_err(|_| LoneSurrogate)?);
            i = next;
            continue;
        }
        let c = raw[i + 1];
        i += 2;
        let ch = match c {
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(&raw[i..i + 4]);
                i += 4;
                if (0xD800..0xDC00).contains(&hi) && raw.get(i..i + 2) == Some(b"\\u") {
                    let lo = hex4(&raw[i + 2..i + 6]);
                    if (0xDC00..0xE000).contains(&lo) {
                        i += 6;
                        let code = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        out.push(char::from_u32(code).ok_or(LoneSurrogate)?);
                        continue;
                    }
                }
                match char::from_u32(hi) {
                    Some(c) => c,
                    None if lossy => char::REPLACEMENT_CHARACTER,
                    None => return Err(LoneSurrogate),
                }
            }
            other => other as char, // " \ /
        };
        out.push(ch);
    }
    Ok(out)
}
