//! Diagnostics: what is wrong with a spec, and exactly where.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How bad a diagnostic is. Errors fail validation; warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

macro_rules! codes {
    ($($variant:ident => $text:literal, $severity:ident;)*) => {
        /// A stable identifier for each kind of problem. The text form never
        /// changes once released, so editors and scripts can match on it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            /// Every code, in declaration order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The stable text form, such as `unknown-key`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                }
            }

            /// The severity this code is always reported with.
            pub fn severity(self) -> Severity {
                match self {
                    $(Code::$variant => Severity::$severity,)*
                }
            }

            /// Parses the text form back into a code.
            pub fn parse(text: &str) -> Option<Code> {
                match text {
                    $($text => Some(Code::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    YamlSyntax => "yaml-syntax", Error;
    EmptyDocument => "empty-document", Error;
    ExtraDocument => "extra-document", Warning;
    DuplicateKey => "duplicate-key", Error;
    TooComplex => "too-complex", Error;
    UnknownKey => "unknown-key", Error;
    WrongType => "wrong-type", Error;
    MissingKey => "missing-key", Error;
    OutOfRange => "out-of-range", Error;
    BadEnum => "bad-enum", Error;
    DuplicateService => "duplicate-service", Error;
    BadVolumeName => "bad-volume-name", Error;
    DuplicateVolume => "duplicate-volume", Error;
    BadImageRef => "bad-image-ref", Error;
    BadBind => "bad-bind", Error;
    BadTmpfs => "bad-tmpfs", Error;
    BadMount => "bad-mount", Error;
    UnknownCapability => "unknown-capability", Error;
    BadRlimit => "bad-rlimit", Error;
    BadDevice => "bad-device", Error;
    BadDeviceMode => "bad-device-mode", Error;
    BadFileMode => "bad-file-mode", Error;
    UnknownId => "unknown-id", Error;
    FileNoContent => "file-no-content", Error;
    FileContentConflict => "file-content-conflict", Error;
    FileNoPath => "file-no-path", Error;
    BadMetadata => "bad-metadata", Error;
    UnknownVolume => "unknown-volume", Error;
    ReadonlyVolume => "readonly-volume", Error;
    BadTrustOrg => "bad-trust-org", Error;
    BadTrustImage => "bad-trust-image", Error;
    DroppedByLinuxkit => "dropped-by-linuxkit", Warning;
    NamespacePath => "namespace-path", Warning;
    VolumeOptionIgnored => "volume-option-ignored", Warning;
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Code::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown diagnostic code `{text}`")))
    }
}

/// One problem found in a spec.
///
/// `line` and `col` are 1-based and point at the offending key or value.
/// `path` is the key path, such as `services[1].capabilities[0]`; it is empty
/// for problems with the document as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub line: u32,
    pub col: u32,
    pub severity: Severity,
    pub code: Code,
    pub message: String,
    pub path: String,
}

impl Diagnostic {
    pub fn new(code: Code, pos: Pos, path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: None,
            line: pos.line,
            col: pos.col,
            severity: code.severity(),
            code,
            message: message.into(),
            path: path.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Formats as `FILE:LINE:COL: SEVERITY[CODE]: MESSAGE (at PATH)`, the shape
/// compilers use, so editors can jump to it.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
        }
        write!(
            f,
            "{}:{}: {}[{}]: {}",
            self.line, self.col, self.severity, self.code, self.message
        )?;
        if !self.path.is_empty() {
            write!(f, " (at {})", self.path)?;
        }
        Ok(())
    }
}

/// A 1-based line and column in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, col: 1 };
}
