//! A small JSON reader for the API's largest answers. serde's derived
//! readers cost the WASM module kilobytes of code per struct (a `Build`
//! alone took 18 KB); reading a plain tree and picking fields by hand
//! costs a fraction of that. Types read this way implement [`FromJson`].

/// A parsed JSON value. Objects keep their members in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

/// Why a text is not the JSON expected.
pub type Error = String;

/// Types read from a [`Json`] tree.
pub trait FromJson: Sized {
    fn from_json(j: &Json) -> Result<Self, Error>;
}

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;

/// Parses a whole JSON text.
pub fn parse(text: &str) -> Result<Json, Error> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(v)
}

/// Parses `text` and reads a `T` from it.
pub fn from_str<T: FromJson>(text: &str) -> Result<T, Error> {
    T::from_json(&parse(text)?)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> Error {
        format!("{what} at byte {}", self.i)
    }

    fn ws(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, Error> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.ws();
        match self.s.get(self.i) {
            None => Err(self.err("unexpected end")),
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.eat("}") {
                    return Ok(Json::Obj(members));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.ws();
                    if !self.eat(":") {
                        return Err(self.err("expected `:`"));
                    }
                    members.push((key, self.value(depth + 1)?));
                    self.ws();
                    if self.eat("}") {
                        return Ok(Json::Obj(members));
                    }
                    if !self.eat(",") {
                        return Err(self.err("expected `,` or `}`"));
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat("]") {
                        return Ok(Json::Arr(items));
                    }
                    if !self.eat(",") {
                        return Err(self.err("expected `,` or `]`"));
                    }
                }
            }
            Some(b'"') => self.string().map(Json::Str),
            Some(_) if self.eat("null") => Ok(Json::Null),
            Some(_) if self.eat("true") => Ok(Json::Bool(true)),
            Some(_) if self.eat("false") => Ok(Json::Bool(false)),
            Some(_) => self.number(),
        }
    }

    fn number(&mut self) -> Result<Json, Error> {
        let start = self.i;
        while matches!(
            self.s.get(self.i),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()
            .filter(|t| t.starts_with(|c: char| c == '-' || c.is_ascii_digit()))
            .and_then(|t| t.parse::<f64>().ok())
            .map(Json::Num)
            .ok_or_else(|| {
                self.i = start;
                self.err("expected a value")
            })
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(digits)
    }

    fn string(&mut self) -> Result<String, Error> {
        if !self.eat("\"") {
            return Err(self.err("expected a string"));
        }
        let mut out = String::new();
        loop {
            let start = self.i;
            while matches!(self.s.get(self.i), Some(c) if *c != b'"' && *c != b'\\' && *c >= 0x20) {
                self.i += 1;
            }
            // The input is a &str and the run stops at ASCII bytes, so it
            // is whole UTF-8.
            out.push_str(std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default());
            match self.s.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = *self
                        .s
                        .get(self.i)
                        .ok_or_else(|| self.err("unexpected end"))?;
                    self.i += 1;
                    out.push(match c {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let mut code = self.hex4()?;
                            if (0xD800..0xDC00).contains(&code) && self.eat("\\u") {
                                let low = self.hex4()?;
                                if (0xDC00..0xE000).contains(&low) {
                                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                                }
                            }
                            char::from_u32(code).unwrap_or('\u{FFFD}')
                        }
                        _ => return Err(self.err("bad escape")),
                    });
                }
                _ => return Err(self.err("unterminated string")),
            }
        }
    }
}

impl Json {
    /// Member `key` of an object; `None` for a missing member or a
    /// non-object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn field(&self, key: &str) -> Result<&Json, Error> {
        self.get(key)
            .ok_or_else(|| format!("missing field `{key}`"))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A required string member.
    pub fn str(&self, key: &str) -> Result<String, Error> {
        self.field(key)?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("`{key}` is not a string"))
    }

    /// A string member that may be missing or null.
    pub fn opt_str(&self, key: &str) -> Result<Option<String>, Error> {
        match self.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(_) => self.str(key).map(Some),
        }
    }

    /// A required non-negative integer member.
    pub fn u64(&self, key: &str) -> Result<u64, Error> {
        match self.field(key)? {
            Json::Num(n) if *n >= 0.0 && n.fract() == 0.0 && *n <= 9_007_199_254_740_992.0 => {
                Ok(*n as u64)
            }
            _ => Err(format!("`{key}` is not a non-negative integer")),
        }
    }

    /// A required integer member.
    pub fn i64(&self, key: &str) -> Result<i64, Error> {
        match self.field(key)? {
            Json::Num(n) if n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_992.0 => Ok(*n as i64),
            _ => Err(format!("`{key}` is not an integer")),
        }
    }

    /// A required boolean member.
    pub fn bool(&self, key: &str) -> Result<bool, Error> {
        match self.field(key)? {
            Json::Bool(b) => Ok(*b),
            _ => Err(format!("`{key}` is not a boolean")),
        }
    }

    /// A required array member, each item read by `T`.
    pub fn list<T: FromJson>(&self, key: &str) -> Result<Vec<T>, Error> {
        match self.field(key)? {
            Json::Arr(items) => items.iter().map(T::from_json).collect(),
            _ => Err(format!("`{key}` is not an array")),
        }
    }

    /// An array member that may be missing or null (then empty).
    pub fn opt_list<T: FromJson>(&self, key: &str) -> Result<Vec<T>, Error> {
        match self.get(key) {
            None | Some(Json::Null) => Ok(Vec::new()),
            Some(_) => self.list(key),
        }
    }

    /// An object member that may be missing or null.
    pub fn opt<T: FromJson>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => T::from_json(v).map(Some),
        }
    }
}

impl Json {
    /// Appends the value as compact JSON text.
    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(&n.to_string()),
            Json::Str(s) => write_str(s, out),
            Json::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Obj(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(k, out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl FromJson for String {
    fn from_json(j: &Json) -> Result<String, Error> {
        j.as_str()
            .map(str::to_owned)
            .ok_or_else(|| "expected a string".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_serde_json_parses() {
        for text in [
            r#"{"a":[1,-2.5,3e2,true,false,null],"b":{"c":"d"},"e":""}"#,
            r#" [ ] "#,
            r#"{}"#,
            r#""esc \" \\ \/ \b \f \n \r \t \u00e9 \ud83d\ude00 é""#,
            "0",
            "-0.0",
            "123456789",
        ] {
            let ours = parse(text).unwrap();
            let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
            assert!(same(&ours, &theirs), "{text}: {ours:?}");
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for text in [
            "",
            "{",
            "[1,]",
            r#"{"a" 1}"#,
            r#"{"a":1,}"#,
            "tru",
            "\"open",
            "01x",
            "1 2",
            r#""\x""#,
            r#""\u12""#,
            "{\"a\":\"\u{1}\"}",
            "-",
            "+1",
            ".5",
        ] {
            assert!(parse(text).is_err(), "{text:?}");
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_err(),
                "{text:?}"
            );
        }
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn writes_what_it_reads() {
        let text = r#"{"a":[1,-2.5,300,true,false,null],"b":{"c":"d\"e\\f\ng\u0001é"},"e":""}"#;
        let mut out = String::new();
        parse(text).unwrap().write(&mut out);
        assert_eq!(
            out,
            r#"{"a":[1,-2.5,300,true,false,null],"b":{"c":"d\"e\\f\ng\u0001é"},"e":""}"#
        );
        assert_eq!(parse(&out).unwrap(), parse(text).unwrap());
    }

    #[test]
    fn reads_fields() {
        let j =
            parse(r#"{"s":"x","n":3,"neg":-4,"f":1.5,"b":true,"z":null,"l":["p","q"]}"#).unwrap();
        assert_eq!(j.str("s").unwrap(), "x");
        assert!(j.str("n").is_err());
        assert!(j.str("missing").unwrap_err().contains("missing"));
        assert_eq!(j.opt_str("z").unwrap(), None);
        assert_eq!(j.opt_str("absent").unwrap(), None);
        assert!(j.opt_str("n").is_err());
        assert_eq!(j.u64("n").unwrap(), 3);
        assert!(j.u64("neg").is_err());
        assert!(j.u64("f").is_err());
        assert_eq!(j.i64("neg").unwrap(), -4);
        assert!(j.bool("b").unwrap());
        assert_eq!(j.list::<String>("l").unwrap(), ["p", "q"]);
        assert!(j.opt_list::<String>("z").unwrap().is_empty());
        assert!(j.list::<String>("s").is_err());
        assert_eq!(j.opt::<String>("s").unwrap().as_deref(), Some("x"));
    }

    fn same(j: &Json, v: &serde_json::Value) -> bool {
        use serde_json::Value;
        match (j, v) {
            (Json::Null, Value::Null) => true,
            (Json::Bool(a), Value::Bool(b)) => a == b,
            (Json::Num(a), Value::Number(b)) => b.as_f64() == Some(*a),
            (Json::Str(a), Value::String(b)) => a == b,
            (Json::Arr(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
            }
            (Json::Obj(a), Value::Object(b)) => {
                a.len() == b.len() && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| same(x, y)))
            }
            _ => false,
        }
    }
}
