//! The BPE model on bytes: the vocabulary, the merge ranks, the merge loop and a piece cache.
//!
//! A byte-level vocabulary spells each byte as one printable character (GPT-2's table: `Ġ` for a
//! space, ...). Decoded back to bytes, tokens and pieces are plain byte strings, so no piece is
//! converted to that alphabet here.
//!
//! The merge loop gives what `tokenizers`' `BPE` model gives, step for step: each byte starts as
//! its own symbol; a queue holds the mergeable neighbours ordered by the merge's rank, then by
//! position; the first is merged unless it is stale (the left symbol is gone or last, or the pair
//! there no longer merges into the same token), and the new symbol's pairs with its neighbours are
//! queued. With `ignore_merges` a piece that is itself in the vocabulary is that one token.
//!
//! **The cache.** Most pieces of real text are words seen before. Each thread keeps the ids of
//! the pieces it merged (up to [`CACHE_ENTRIES`], then it starts again; pieces under
//! [`CACHE_MAX_BYTES`] only), so a repeated word costs one hash lookup. It belongs to one model at a
//! time, and is emptied when the thread encodes with another.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use ahash::RandomState;

use super::Text;

/// Pieces a thread's cache holds before it is emptied.
const CACHE_ENTRIES: usize = 1 << 16;
/// Longer pieces are merged every time.
const CACHE_MAX_BYTES: usize = 256;

/// A fixed hasher: the maps do not face inputs chosen to collide (keys are vocabulary entries and
/// the pieces of the text), and a fixed seed keeps runs alike.
fn hasher() -> RandomState {
    RandomState::with_seeds(0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344, 0xa409_3822_299f_31d0, 0x082e_fa98_ec4e_6c89)
}

/// GPT-2's byte-to-character table, inverted: the byte each printable stand-in character spells.
fn stand_in_bytes() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let c = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).expect("U+0100..U+0143 are characters");
            next += 1;
            c
        };
        map.insert(c, b);
    }
    map
}

/// A token's bytes, or `None` when it has a character outside the byte alphabet (such a token
/// never comes out of byte-level text).
fn token_bytes(token: &str, table: &HashMap<char, u8>) -> Option<Vec<u8>> {
    token.chars().map(|c| table.get(&c).copied()).collect()
}

/// The vocabulary and merges of a byte-level BPE model.
pub(super) struct Model {
    vocab: HashMap<Box<[u8]>, u32, RandomState>,
    /// The token of each single byte.
    byte_ids: [u32; 256],
    /// (left id, right id) packed into a u64 → (rank, merged id).
    merges: HashMap<u64, (u32, u32), RandomState>,
    /// The length in bytes of each token that can come out of the merge loop, by id.
    lengths: Vec<u32>,
    ignore_merges: bool,
    /// Tells this model's cache entries from another's.
    id: u64,
}

fn pair(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

impl Model {
    /// Builds the model from a vocabulary and merges in rank order, as `tokenizers` serializes
    /// them; `Err` says why the model is not byte-level.
    pub(super) fn new(
        vocab: &HashMap<Text<'_>, u32>,
        merges: &[(Text<'_>, Text<'_>)],
        ignore_merges: bool,
    ) -> Result<Model, String> {
        let table = stand_in_bytes();
        let mut bytes_vocab = HashMap::with_capacity_and_hasher(vocab.len(), hasher());
        let mut lengths = Vec::new();
        for (token, &id) in vocab {
            let Some(bytes) = token_bytes(token, &table) else { continue };
            if lengths.len() <= id as usize {
                lengths.resize(id as usize + 1, 0);
            }
            lengths[id as usize] = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            bytes_vocab.insert(bytes.into_boxed_slice(), id);
        }
        let mut byte_ids = [0u32; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = *bytes_vocab
                .get(&[b as u8][..])
                .ok_or_else(|| format!("the vocabulary has no token for the byte 0x{b:02X}"))?;
        }
        let mut merge_map = HashMap::with_capacity_and_hasher(merges.len(), hasher());
        let mut joined = String::new();
        for (rank, (left, right)) in merges.iter().enumerate() {
            let (left, right): (&str, &str) = (left, right);
            let (Some(&l), Some(&r)) = (vocab.get(left), vocab.get(right)) else {
                return Err(format!("the merge `{left} {right}` names a token outside the vocabulary"));
            };
            joined.clear();
            joined.push_str(left);
            joined.push_str(right);
            let Some(&merged) = vocab.get(joined.as_str()) else {
                return Err(format!("the merge `{left} {right}` makes a token outside the vocabulary"));
            };
            let rank = u32::try_from(rank).map_err(|_| "more than 2^32 merges".to_string())?;
            // A repeated pair keeps its last rank, as `tokenizers` builds its map.
            merge_map.insert(pair(l, r), (rank, merged));
        }
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Ok(Model {
            vocab: bytes_vocab,
            byte_ids,
            merges: merge_map,
            lengths,
            ignore_merges,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The number of merges.
    pub(super) fn merges(&self) -> usize {
        self.merges.len()
    }

    /// The length in bytes of a token that [`encode`](Self::encode) gave.
    #[inline]
    pub(super) fn length(&self, id: u32) -> usize {
        self.lengths.get(id as usize).map_or(0, |&l| l as usize)
    }

    /// Appends the ids of one piece.
    pub(super) fn encode(&self, piece: &[u8], out: &mut Vec<u32>) {
        match piece {
            [] => {}
            &[b] => out.push(self.byte_ids[usize::from(b)]),
            _ => {
                if self.ignore_merges {
                    if let Some(&id) = self.vocab.get(piece) {
                        out.push(id);
                        return;
                    }
                }
                if piece.len() >= CACHE_MAX_BYTES {
                    return SCRATCH.with(|s| self.merge(piece, &mut s.borrow_mut(), out));
                }
                CACHE.with(|cache| {
                    let mut cache = cache.borrow_mut();
                    if cache.owner != self.id {
                        cache.map.clear();
                        cache.owner = self.id;
                    }
                    if let Some(ids) = cache.map.get(piece) {
                        out.extend_from_slice(ids);
                        return;
                    }
                    let start = out.len();
                    SCRATCH.with(|s| self.merge(piece, &mut s.borrow_mut(), out));
                    if cache.map.len() >= CACHE_ENTRIES {
                        cache.map.clear();
                    }
                    cache.map.insert(piece.into(), out[start..].into());
                });
            }
        }
    }

    /// The merge loop (see the module docs).
    fn merge(&self, piece: &[u8], s: &mut Scratch, out: &mut Vec<u32>) {
        let n = piece.len();
        s.ids.clear();
        s.ids.extend(piece.iter().map(|&b| self.byte_ids[usize::from(b)]));
        s.next.clear();
        s.next.extend(1..=n);
        s.prev.clear();
        s.prev.extend((0..n).map(|i| i.wrapping_sub(1)));
        s.alive.clear();
        s.alive.resize(n, true);
        s.queue.clear();
        for i in 0..n - 1 {
            if let Some(&(rank, merged)) = self.merges.get(&pair(s.ids[i], s.ids[i + 1])) {
                s.queue.push(Reverse((rank, i, merged)));
            }
        }
        while let Some(Reverse((_, pos, merged))) = s.queue.pop() {
            let right = s.next[pos];
            if !s.alive[pos] || right >= n {
                continue;
            }
            if self.merges.get(&pair(s.ids[pos], s.ids[right])).map(|m| m.1) != Some(merged) {
                continue;
            }
            s.ids[pos] = merged;
            s.alive[right] = false;
            let after = s.next[right];
            s.next[pos] = after;
            if after < n {
                s.prev[after] = pos;
            }
            let before = s.prev[pos];
            if before < n {
                if let Some(&(rank, m)) = self.merges.get(&pair(s.ids[before], merged)) {
                    s.queue.push(Reverse((rank, before, m)));
                }
            }
            if after < n {
                if let Some(&(rank, m)) = self.merges.get(&pair(merged, s.ids[after])) {
                    s.queue.push(Reverse((rank, pos, m)));
                }
            }
        }
        let mut i = 0;
        while i < n {
            out.push(s.ids[i]);
            i = s.next[i];
        }
    }
}

/// The merge loop's buffers, kept per thread.
#[derive(Default)]
struct Scratch {
    ids: Vec<u32>,
    next: Vec<usize>,
    prev: Vec<usize>,
    alive: Vec<bool>,
    queue: BinaryHeap<Reverse<(u32, usize, u32)>>,
}

/// A thread's cache of merged pieces, for the model `owner`.
struct Cache {
    owner: u64,
    map: HashMap<Box<[u8]>, Box<[u32]>, RandomState>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
    static CACHE: RefCell<Cache> = RefCell::new(Cache { owner: 0, map: HashMap::with_hasher(hasher()) });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn model(vocab: &[&str], merges: &[(&str, &str)], ignore_merges: bool) -> Model {
        // Every byte's stand-in, then the given tokens.
        let text = |s: &str| Text(Cow::Owned(s.to_string()));
        let mut map: HashMap<Text<'_>, u32> = HashMap::new();
        for (&c, &b) in &stand_in_bytes() {
            map.insert(text(&c.to_string()), u32::from(b));
        }
        for (i, t) in vocab.iter().enumerate() {
            map.insert(text(t), 256 + i as u32);
        }
        let merges: Vec<(Text<'_>, Text<'_>)> = merges.iter().map(|(a, b)| (text(a), text(b))).collect();
        Model::new(&map, &merges, ignore_merges).expect("model")
    }

    fn ids(m: &Model, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        m.encode(text.as_bytes(), &mut out);
        out
    }

    #[test]
    fn merges_by_rank_then_position() {
        let m = model(&["ab", "bc", "abc"], &[("b", "c"), ("a", "b"), ("a", "bc")], false);
        // "bc" (rank 0) first, then "a"+"bc".
        assert_eq!(ids(&m, "abc"), vec![258]);
        assert_eq!(ids(&m, "abab"), vec![256, 256]);
        assert_eq!(ids(&m, "x"), vec![u32::from(b'x')]);
        assert_eq!(m.length(258), 3);
    }

    #[test]
    fn ignore_merges_takes_a_whole_piece_from_the_vocabulary() {
        // "abc" is in the vocabulary, but no merge makes it from "ab" + "c".
        let with = model(&["ab", "abc"], &[("a", "b")], true);
        let without = model(&["ab", "abc"], &[("a", "b")], false);
        assert_eq!(ids(&with, "abc"), vec![257]);
        assert_eq!(ids(&without, "abc"), vec![256, u32::from(b'c')]);
    }

    #[test]
    fn spaces_and_high_bytes_use_their_stand_ins() {
        let m = model(&["Ġa", "ĠĠ"], &[("Ġ", "a"), ("Ġ", "Ġ")], false);
        assert_eq!(ids(&m, " a"), vec![256]);
        assert_eq!(ids(&m, "   "), vec![257, u32::from(b' ')]);
        assert_eq!(ids(&m, "é").len(), 2);
    }
}
