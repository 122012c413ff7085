//! The vocabulary of a GGUF model (`tokenizer.ggml.*`) and detokenization as llama.cpp's
//! `llama_detokenize` does it with special tokens not rendered:
//!
//! * SentencePiece (`tokenizer.ggml.model == "llama"`): `▁` becomes a space, byte tokens
//!   `<0xNN>` become their byte; with `add_space_prefix` (SentencePiece's default, off when the
//!   file says so) one leading space of the first piece is dropped.
//! * GPT-2 byte-level BPE (`"gpt2"`): every character of a token maps back to the byte of
//!   GPT-2's `bytes_to_unicode` table.
//! * Control and unknown tokens render as nothing; user-defined tokens as their text; unused
//!   and undefined ones as nothing.

use super::gguf::{GgufFile, MetaArray, MetaValue};
use super::info::ModelInfo;

/// The tokenizer family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabKind {
    /// SentencePiece (`llama`).
    Spm,
    /// GPT-2 byte-level BPE (`gpt2`).
    Gpt2,
}

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_i64(v: i64) -> Option<TokenType> {
        Some(match v {
            0 => TokenType::Undefined,
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }
}

/// Why a vocabulary can't be read or a token can't be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VocabError {
    #[error("the model is not a GGUF file (only GGUF files carry a vocabulary)")]
    NotGguf,
    #[error("metadata `{key}` is missing")]
    Missing { key: &'static str },
    #[error("metadata `{key}` should be {expected}")]
    WrongType {
        key: &'static str,
        expected: &'static str,
    },
    #[error("tokenizer model `{0}` is not supported (llama and gpt2 are)")]
    UnsupportedModel(String),
    #[error("tokenizer.ggml.token_type has {types} entries for {tokens} tokens")]
    TypeCount { types: usize, tokens: usize },
    #[error("tokenizer.ggml.token_type[{index}] = {value} is not a token type (0..=6)")]
    BadType { index: usize, value: i64 },
    #[error("byte token {id} `{text}` is not of the form <0xNN>")]
    BadByteToken { id: u32, text: String },
    #[error("token id {id} is outside the vocabulary ({len} tokens)")]
    OutOfRange { id: u32, len: usize },
}

/// A model's tokens and how to turn ids back into text.
#[derive(Debug, Clone)]
pub struct Vocab {
    kind: VocabKind,
    tokens: Vec<String>,
    types: Vec<TokenType>,
    add_space_prefix: bool,
    bos: Option<u32>,
    eos: Option<u32>,
}

fn ints(a: &MetaArray) -> Option<Vec<i64>> {
    Some(match a {
        MetaArray::I32(v) => v.iter().map(|x| i64::from(*x)).collect(),
        MetaArray::U32(v) => v.iter().map(|x| i64::from(*x)).collect(),
        MetaArray::I8(v) => v.iter().map(|x| i64::from(*x)).collect(),
        MetaArray::U8(v) => v.iter().map(|x| i64::from(*x)).collect(),
        MetaArray::I16(v) => v.iter().map(|x| i64::from(*x)).collect(),
        MetaArray::U16(v) => v.iter().map(|x| i64::from(*x)).collect(),
        MetaArray::I64(v) => v.clone(),
        _ => return None,
    })
}

impl Vocab {
    /// The vocabulary of an opened model (GGUF only).
    pub fn from_info(info: &ModelInfo) -> Result<Vocab, VocabError> {
        Vocab::from_gguf(info.gguf().ok_or(VocabError::NotGguf)?)
    }

    /// Reads `tokenizer.ggml.{model, tokens, token_type, add_space_prefix, bos_token_id,
    /// eos_token_id}`.
    pub fn from_gguf(file: &GgufFile) -> Result<Vocab, VocabError> {
        let h = file.header();
        let model_key = "tokenizer.ggml.model";
        let model = h
            .get(model_key)
            .ok_or(VocabError::Missing { key: model_key })?
            .as_str()
            .ok_or(VocabError::WrongType {
                key: model_key,
                expected: "a string",
            })?;
        let kind = match model {
            "llama" => VocabKind::Spm,
            "gpt2" => VocabKind::Gpt2,
            other => return Err(VocabError::UnsupportedModel(other.to_string())),
        };
        let tokens_key = "tokenizer.ggml.tokens";
        let tokens = match h
            .get(tokens_key)
            .ok_or(VocabError::Missing { key: tokens_key })?
        {
            MetaValue::Array(MetaArray::String(v)) => v.clone(),
            _ => {
                return Err(VocabError::WrongType {
                    key: tokens_key,
                    expected: "an array of strings",
                })
            }
        };
        let types_key = "tokenizer.ggml.token_type";
        let types = match h.get(types_key) {
            None => vec![TokenType::Normal; tokens.len()],
            Some(v) => {
                let raw = v.as_array().and_then(ints).ok_or(VocabError::WrongType {
                    key: types_key,
                    expected: "an array of integers",
                })?;
                if raw.len() != tokens.len() {
                    return Err(VocabError::TypeCount {
                        types: raw.len(),
                        tokens: tokens.len(),
                    });
                }
                raw.iter()
                    .enumerate()
                    .map(|(index, &value)| {
                        TokenType::from_i64(value).ok_or(VocabError::BadType { index, value })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        let add_space_prefix = h
            .get("tokenizer.ggml.add_space_prefix")
            .and_then(MetaValue::as_bool)
            .unwrap_or(kind == VocabKind::Spm);
        let id = |key: &str| {
            h.get(key)
                .and_then(MetaValue::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        let vocab = Vocab {
            kind,
            tokens,
            types,
            add_space_prefix,
            bos: id("tokenizer.ggml.bos_token_id"),
            eos: id("tokenizer.ggml.eos_token_id"),
        };
        // Byte tokens must parse (checked once here so decoding can't fail on them).
        for (i, t) in vocab.types.iter().enumerate() {
            if *t == TokenType::Byte && kind == VocabKind::Spm {
                let text = &vocab.tokens[i];
                if parse_byte_token(text).is_none() {
                    return Err(VocabError::BadByteToken {
                        id: i as u32,
                        text: text.clone(),
                    });
                }
            }
        }
        Ok(vocab)
    }

    pub fn kind(&self) -> VocabKind {
        self.kind
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The stored text of token `id`.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether decoding drops one leading space of the first piece.
    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// The bytes token `id` renders as (special tokens not rendered).
    pub fn piece(&self, id: u32) -> Result<Vec<u8>, VocabError> {
        let text = self.token(id).ok_or(VocabError::OutOfRange {
            id,
            len: self.len(),
        })?;
        let ty = self.types[id as usize];
        Ok(match ty {
            TokenType::Control | TokenType::Unknown | TokenType::Unused | TokenType::Undefined => {
                Vec::new()
            }
            TokenType::UserDefined => text.as_bytes().to_vec(),
            TokenType::Byte if self.kind == VocabKind::Spm => {
                parse_byte_token(text).map_or_else(Vec::new, |b| vec![b])
            }
            // GPT-2 files mark no byte tokens; treat one like a normal token.
            TokenType::Normal | TokenType::Byte => match self.kind {
                VocabKind::Spm => text.replace('\u{2581}', " ").into_bytes(),
                VocabKind::Gpt2 => gpt2_decode(text),
            },
        })
    }

    /// The bytes of `ids` detokenized (see the module docs).
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, VocabError> {
        let mut out = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let piece = self.piece(id)?;
            let skip = usize::from(i == 0 && self.add_space_prefix && piece.first() == Some(&b' '));
            out.extend_from_slice(&piece[skip..]);
        }
        Ok(out)
    }

    /// [`Vocab::decode_bytes`] as text; bytes that are not UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, VocabError> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }
}

/// `<0xNN>` -> the byte.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes map to themselves, the other 68 bytes
/// to U+0100 onwards in byte order. Returns the byte of `c`.
fn gpt2_byte(c: char) -> Option<u8> {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let cp = c as u32;
    if cp < 0x100 {
        return printable(cp).then_some(cp as u8);
    }
    let n = cp - 0x100;
    (0u32..256)
        .filter(|b| !printable(*b))
        .nth(n as usize)
        .map(|b| b as u8)
}

/// `llama_decode_text`: each character back to its byte; a character outside the table is
/// written as `[UNK_BYTE_0x<its UTF-8 in hex><token>]`, as llama.cpp does.
fn gpt2_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match gpt2_byte(c) {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                let hex: String = c
                    .encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                out.extend_from_slice(format!("[UNK_BYTE_0x{hex}{text}]").as_bytes());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_table_round_trips_every_byte() {
        // bytes_to_unicode: 188 printable bytes map to themselves, 68 to U+0100..U+0143.
        let mut seen = [false; 256];
        for cp in (0u32..0x100).chain(0x100..0x144) {
            if let Some(b) = char::from_u32(cp).and_then(gpt2_byte) {
                assert!(!seen[b as usize], "byte {b} twice");
                seen[b as usize] = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(gpt2_byte('Ġ'), Some(b' '));
        assert_eq!(gpt2_byte('Ċ'), Some(b'\n'));
        assert_eq!(gpt2_byte('A'), Some(b'A'));
        assert_eq!(gpt2_byte('\u{144}'), None);
        assert_eq!(gpt2_decode("ĠParis"), b" Paris");
        // "é" as UTF-8 bytes c3 a9 -> characters Ã ©.
        assert_eq!(gpt2_decode("Ã©"), "é".as_bytes());
    }

    #[test]
    fn spm_pieces() {
        let v = Vocab {
            kind: VocabKind::Spm,
            tokens: ["<bos>", "▁the", "<0x0A>", "cat", "<ctl>", "\n\n"]
                .map(String::from)
                .to_vec(),
            types: vec![
                TokenType::Control,
                TokenType::Normal,
                TokenType::Byte,
                TokenType::Normal,
                TokenType::Control,
                TokenType::UserDefined,
            ],
            add_space_prefix: true,
            bos: Some(0),
            eos: None,
        };
        assert_eq!(v.decode(&[1, 3, 2, 4, 5, 1]).unwrap(), "thecat\n\n\n the");
        // The leading space goes only for the first token.
        assert_eq!(v.decode(&[0, 1]).unwrap(), " the");
        let no_prefix = Vocab {
            add_space_prefix: false,
            ..v.clone()
        };
        assert_eq!(no_prefix.decode(&[1]).unwrap(), " the");
        assert_eq!(
            v.decode(&[9]),
            Err(VocabError::OutOfRange { id: 9, len: 6 })
        );
        assert_eq!(parse_byte_token("<0xFF>"), Some(255));
        assert_eq!(parse_byte_token("<0xF>"), None);
    }
}
