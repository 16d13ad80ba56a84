//! Token estimates with a real tokenizer (cl100k), counted once per message and stored with it.
//!
//! The counts are exactly those of `tiktoken_rs::cl100k_base().encode_ordinary(text).len()`, but the
//! vocabulary is kept in a compact table (1.7 MB) instead of tiktoken's `CoreBPE` (tens of MB of hash
//! maps of `Vec<u8>`): the `CoreBPE` is built once, copied into the table, and dropped. Counting repeats
//! tiktoken's two steps: the cl100k pattern splits the text into pieces, and each piece that is not itself
//! a token goes through tiktoken's byte-pair merge, whose parts are counted.

use std::collections::BinaryHeap;
use std::hash::Hasher;
use std::sync::OnceLock;

use fancy_regex::Regex;
use hashbrown::HashTable;
use rustc_hash::FxHasher;

/// cl100k_base's pre-tokenisation pattern, copied verbatim from tiktoken-rs 0.12.1
/// (`src/tiktoken_ext/openai_public.rs`, MIT licence), which has it from OpenAI's tiktoken.
const CL100K_PATTERN: &str = "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+|\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s";

/// cl100k_base's ordinary tokens have the ranks `0..CL100K_RANKS`; the special tokens (100257 and up) are
/// never produced by `encode_ordinary`.
const CL100K_RANKS: Rank = 100_256;

/// From this piece length on, tiktoken-rs merges with a heap rather than by rescanning the parts.
const LARGE_PIECE: usize = 100;

type Rank = u32;

/// Counts tokens; cheap to clone. cl100k is OpenAI's tokenizer: for other model families it is an
/// estimate, which the context window's safety margin absorbs.
#[derive(Clone)]
pub struct TokenCounter {
    /// `None` only if the embedded encoding could not be loaded (it always can): counts are then estimated.
    bpe: &'static Option<Bpe>,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCounter(cl100k_base)")
    }
}

impl Default for TokenCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenCounter {
    /// Loads the encoding (shipped inside tiktoken-rs: nothing is downloaded) once per process and keeps its
    /// compact copy. Blocking, about 100 ms the first time in a process: build it at start-up.
    pub fn new() -> Self {
        static BPE: OnceLock<Option<Bpe>> = OnceLock::new();
        let bpe = BPE.get_or_init(|| {
            Bpe::cl100k()
                .inspect_err(|err| tracing::error!(%err, "cl100k could not be loaded: token counts are estimates"))
                .ok()
        });
        Self { bpe }
    }

    /// The number of cl100k tokens of `text` (special tokens are counted as plain text).
    pub fn count(&self, text: &str) -> u32 {
        let count = match self.bpe {
            Some(bpe) => bpe.count(text),
            None => text.len().div_ceil(4),
        };
        u32::try_from(count).unwrap_or(u32::MAX)
    }
}

/// cl100k's pre-tokenisation and vocabulary.
struct Bpe {
    regex: Regex,
    vocab: Vocab,
}

impl Bpe {
    /// Builds tiktoken's `CoreBPE`, copies its tokens into a [`Vocab`], and drops it.
    fn cl100k() -> Result<Self, String> {
        let regex = Regex::new(CL100K_PATTERN).map_err(|err| err.to_string())?;
        let core = tiktoken_rs::cl100k_base().map_err(|err| err.to_string())?;
        let vocab = Vocab::new(|rank| core.decode_bytes(&[rank]).ok())?;
        drop(core);
        Ok(Self { regex, vocab })
    }

    /// tiktoken's `encode_ordinary(text).len()`.
    fn count(&self, text: &str) -> usize {
        let mut count = 0;
        let mut end = 0;
        for found in self.regex.find_iter(text) {
            match found {
                Ok(piece) => {
                    count += self.count_piece(piece.as_str().as_bytes());
                    end = piece.end();
                }
                // The backtracking limit, which this pattern does not reach (tiktoken would panic): the rest
                // is counted as one piece.
                Err(_) => {
                    count += self.count_piece(text.as_bytes().get(end..).unwrap_or_default());
                    break;
                }
            }
        }
        count
    }

    /// The number of tokens of one piece of the split (tiktoken's `byte_pair_encode(piece).len()`).
    fn count_piece(&self, piece: &[u8]) -> usize {
        if piece.is_empty() {
            0
        } else if piece.len() == 1 || self.vocab.rank(piece).is_some() {
            1
        } else if piece.len() < LARGE_PIECE {
            byte_pair_merge(&self.vocab, piece).len() - 1
        } else {
            byte_pair_merge_large(&self.vocab, piece)
        }
    }
}

/// The tokens' bytes, one after the other, and a hash table from bytes to rank holding only the ranks.
struct Vocab {
    /// Every token's bytes, in rank order.
    bytes: Box<[u8]>,
    /// Rank `r`'s bytes are `bytes[offsets[r]..offsets[r + 1]]` (empty for a rank that does not exist).
    offsets: Box<[u32]>,
    /// Ranks, hashed by their bytes.
    index: HashTable<Rank>,
}

impl Vocab {
    /// Asks `token` for the bytes of every rank `0..CL100K_RANKS`.
    fn new(token: impl Fn(Rank) -> Option<Vec<u8>>) -> Result<Self, String> {
        let mut bytes = Vec::with_capacity(1 << 20);
        let mut offsets = Vec::with_capacity(CL100K_RANKS as usize + 1);
        offsets.push(0);
        for rank in 0..CL100K_RANKS {
            if let Some(token) = token(rank) {
                bytes.extend_from_slice(&token);
            }
            offsets.push(u32::try_from(bytes.len()).map_err(|err| err.to_string())?);
        }
        let bytes = bytes.into_boxed_slice();
        let offsets = offsets.into_boxed_slice();
        let token = |rank: Rank| slice(&bytes, &offsets, rank);
        let mut index = HashTable::with_capacity(CL100K_RANKS as usize);
        for rank in 0..CL100K_RANKS {
            if !token(rank).is_empty() {
                index.insert_unique(hash(token(rank)), rank, |&rank| hash(token(rank)));
            }
        }
        Ok(Self { bytes, offsets, index })
    }

    /// The rank of the token whose bytes are `piece`, if there is one.
    fn rank(&self, piece: &[u8]) -> Option<Rank> {
        self.index.find(hash(piece), |&rank| slice(&self.bytes, &self.offsets, rank) == piece).copied()
    }

    /// `rank` as tiktoken's `ranks.get(piece).unwrap_or(&Rank::MAX)`.
    fn rank_or_max(&self, piece: &[u8]) -> Rank {
        self.rank(piece).unwrap_or(Rank::MAX)
    }
}

/// Rank `rank`'s bytes in a [`Vocab`]'s `bytes` and `offsets`.
fn slice<'a>(bytes: &'a [u8], offsets: &[u32], rank: Rank) -> &'a [u8] {
    let rank = rank as usize;
    match (offsets.get(rank), offsets.get(rank + 1)) {
        (Some(&start), Some(&end)) => bytes.get(start as usize..end as usize).unwrap_or_default(),
        _ => &[],
    }
}

fn hash(bytes: &[u8]) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write(bytes);
    hasher.finish()
}

// The two merges below are ported from tiktoken-rs 0.12.1 (`src/vendor_tiktoken.rs`, MIT licence), a copy
// of OpenAI's tiktoken, with the same semantics: repeatedly merge the adjacent pair of parts whose
// concatenation is the token of lowest rank (the leftmost on ties), until no pair is a token.

/// tiktoken's `_byte_pair_merge`, for pieces of at least two bytes: the parts' starts, plus the piece's end,
/// each with the rank of the pair starting there.
fn byte_pair_merge(ranks: &Vocab, piece: &[u8]) -> Vec<(usize, Rank)> {
    // This is a vector of (start, rank).
    // The rank is of the pair starting at position start.
    let mut parts = Vec::with_capacity(piece.len() + 1);

    let mut min_rank: (Rank, usize) = (Rank::MAX, usize::MAX);
    for i in 0..piece.len() - 1 {
        let rank = ranks.rank_or_max(&piece[i..i + 2]);
        if rank < min_rank.0 {
            min_rank = (rank, i);
        }
        parts.push((i, rank));
    }
    parts.push((piece.len() - 1, Rank::MAX));
    parts.push((piece.len(), Rank::MAX));

    let get_rank = |parts: &Vec<(usize, Rank)>, i: usize| {
        if (i + 3) < parts.len() {
            // Similar to `piece[i..i + 2]` above. The +3 is because we haven't yet deleted
            // parts[i + 1], see comment in the main loop.
            ranks.rank_or_max(&piece[parts[i].0..parts[i + 3].0])
        } else {
            Rank::MAX
        }
    };

    while min_rank.0 != Rank::MAX {
        let i = min_rank.1;
        // Update parts[i] and parts[i - 1] before removing parts[i + 1], since
        // `parts.remove(i + 1)` will thrash the cache.
        if i > 0 {
            parts[i - 1].1 = get_rank(&parts, i - 1);
        }
        parts[i].1 = get_rank(&parts, i);
        parts.remove(i + 1);

        min_rank = (Rank::MAX, usize::MAX);
        for (i, &(_, rank)) in parts[..parts.len() - 1].iter().enumerate() {
            if rank < min_rank.0 {
                min_rank = (rank, i);
            }
        }
    }
    parts
}

/// A merge waiting in [`byte_pair_merge_large`]'s heap: the lowest rank comes out first, then the leftmost.
#[derive(Eq, PartialEq, Clone, Copy)]
struct Merge {
    start: usize,
    rank: Rank,
}

impl Ord for Merge {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.rank.cmp(&self.rank).then_with(|| other.start.cmp(&self.start))
    }
}

impl PartialOrd for Merge {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// One part (starting at its index) of [`byte_pair_merge_large`]'s piece.
struct State {
    prev: usize,
    end: usize,
    next_end: usize,
    next_rank: Rank,
}

/// tiktoken's `_byte_pair_merge_large`, for pieces of at least two bytes: the number of parts (tiktoken
/// returns their ranks).
fn byte_pair_merge_large(ranks: &Vocab, piece: &[u8]) -> usize {
    let mut state = Vec::with_capacity(piece.len());
    state.push(State { prev: usize::MAX, end: 1, next_end: 2, next_rank: Rank::MAX });

    let mut heap = BinaryHeap::with_capacity(piece.len());
    for i in 0..piece.len() - 1 {
        if let Some(rank) = ranks.rank(&piece[i..i + 2]) {
            heap.push(Merge { start: i, rank });
            state[i].next_rank = rank;
        }
        // note this is happening offset by 1
        state.push(State { prev: i, end: i + 2, next_end: i + 3, next_rank: Rank::MAX });
    }

    // Repeatedly find the valid merge with smallest rank. We merge the (left) token that
    // starts at `start` and ends at `state[start].end` with the (right) token that starts at
    // `state[start].end` and ends at `state[start].next_end`. We invalidate the old merges
    // (the ones that started at `state[start].end` and ended at `state[start]`) and add the two
    // new potential merges to the heap.
    let potential_merge = |state: &mut Vec<State>, heap: &mut BinaryHeap<Merge>, start: usize, next_end_item: usize| {
        state[start].next_end = next_end_item;
        state[start].next_rank = Rank::MAX; // Always invalidate the old merge
        if next_end_item <= piece.len()
            && let Some(rank) = ranks.rank(&piece[start..next_end_item])
        {
            // We have a valid potential merge!
            heap.push(Merge { start, rank });
            state[start].next_rank = rank;
        }
    };

    while let Some(left) = heap.pop() {
        if left.rank == Rank::MAX {
            break;
        }
        if left.rank != state[left.start].next_rank {
            continue; // This merge was invalidated, ignore it
        }

        let left_start = left.start;
        let right_start = state[left_start].end;
        let right_end = state[left_start].next_end;
        let right_next_end = state[right_start].next_end;

        // Merge left and right into a single token
        state[left_start].end = right_end;
        potential_merge(&mut state, &mut heap, left_start, right_next_end);
        if right_end < state.len() {
            state[right_end].prev = left_start;
        }
        // Update the merge that ends at left_start
        if left_start > 0 {
            let prev_start = state[left_start].prev;
            potential_merge(&mut state, &mut heap, prev_start, right_end);
        }
        // Invalidate the merge starting at right_start, so we ignore it when it comes off the heap
        state[right_start].next_rank = Rank::MAX;
    }

    let mut parts = 0;
    let mut i = 0;
    while i < state.len() {
        parts += 1;
        i = state[i].end;
    }
    parts
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use tiktoken_rs::CoreBPE;

    use super::*;

    fn assert_same(counter: &TokenCounter, reference: &CoreBPE, text: &str) {
        let expected = reference.encode_ordinary(text).len();
        assert_eq!(counter.count(text) as usize, expected, "count of {text:?}");
    }

    #[test]
    fn counts_like_cl100k() {
        let counter = TokenCounter::new();
        assert_eq!(counter.count(""), 0);
        assert_eq!(counter.count("hello world"), 2);
        assert!(counter.count(&"word ".repeat(1000)) >= 1000);
    }

    #[test]
    fn the_table_holds_every_token_under_its_rank() {
        let reference = tiktoken_rs::cl100k_base().unwrap();
        let bpe = TokenCounter::new().bpe.as_ref().unwrap();
        for rank in 0..CL100K_RANKS {
            let bytes = reference.decode_bytes(&[rank]).unwrap();
            assert_eq!(bpe.vocab.rank(&bytes), Some(rank));
        }
        assert!(reference.decode_bytes(&[CL100K_RANKS]).is_err(), "no ordinary token beyond the table");
        assert_eq!(bpe.vocab.rank(b"<|endoftext|>"), None, "special tokens are text");
    }

    #[test]
    fn the_table_is_compact() {
        let vocab = &TokenCounter::new().bpe.as_ref().unwrap().vocab;
        let (bytes, offsets, index) = (vocab.bytes.len(), size_of_val(&*vocab.offsets), vocab.index.allocation_size());
        assert!(bytes + offsets + index < 2 << 20, "token bytes {bytes}, offsets {offsets}, index {index}");
    }

    #[test]
    fn same_counts_as_tiktoken_on_a_varied_corpus() {
        let reference = tiktoken_rs::cl100k_base().unwrap();
        let counter = TokenCounter::new();
        let corpus = [
            "",
            " ",
            "a",
            "The quick brown fox jumps over the lazy dog. It wasn't the dog's fault, was it?",
            "Once upon a time, in a land far, far away, there lived a king who loved tokens.\n\nThe end.",
            "fn main() {\n    let x = 42;   \n\tif x > 3 {\n        println!(\"{x}\");  \n    }\n}\n",
            "def f(a, b):\n    return a ** b  # comment   \n\n\n    \n",
            "1234567890123456789012345678901234567890 3.14159 -42 1e10 0x1F 1,000,000 12 345 6789",
            "it's I'm you're we've they'll he'd don't IT'S I'M YOU'RE WE'VE THEY'LL HE'D DON'T 'S 'T 'Re 'vE 'Ll",
            "'s'''t 'x ''ll '",
            "a   b    c     d\n\n\n e \r\n\r\n f\t\t\tg  \n  h   ",
            "trailing spaces    ",
            "    leading spaces",
            "\n\n\n\n",
            "   \n   \n   ",
            "!!!??? ...,,,;;; --- *** \n\n",
            "<|endoftext|> special tokens are plain text <|fim_prefix|>",
            "日本語のテキストです。中文文本。한국어 텍스트.",
            "emoji 😀😃😄 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷🇩🇪 ✨",
            "combining: e\u{301} a\u{308}\u{304} Z\u{335}\u{321}\u{353}a\u{336}\u{31b}l\u{338}g\u{337}o\u{334}",
            "RTL: שלום עולם مرحبا بالعالم \u{202e}reversed\u{202c}",
            "Ελληνικά Кириллица Tiếng Việt ภาษาไทย हिन्दी",
            "\u{0}\u{1}\u{7f}\u{feff}\u{200b}\u{a0}\u{3000}\u{2028}\u{2029}",
            "mixed123abc456DEF!@#$%^&*()_+-=[]{}|;':\",./<>?`~",
        ];
        for text in corpus {
            assert_same(&counter, &reference, text);
        }
    }

    #[test]
    fn same_counts_as_tiktoken_on_long_runs() {
        let reference = tiktoken_rs::cl100k_base().unwrap();
        let counter = TokenCounter::new();
        let mut texts = vec![
            "a".repeat(10_000),
            " ".repeat(10_000),
            "\n".repeat(10_000),
            "1".repeat(10_000),
            "!".repeat(10_000),
            "é".repeat(3_000),
            "日".repeat(3_000),
            "😀".repeat(1_000),
            format!("{}x", " ".repeat(5_000)),
            "ab".repeat(5_000),
            "word ".repeat(2_000),
            "supercalifragilisticexpialidocious".repeat(50),
        ];
        for len in [98, 99, 100, 101, 102, 150, 257] {
            texts.push("a".repeat(len));
            texts.push(" ".repeat(len));
            texts.push(format!("x{}", "ab".repeat(len / 2)));
        }
        for text in &texts {
            assert_same(&counter, &reference, text);
        }
    }

    #[test]
    fn same_counts_as_tiktoken_on_random_strings() {
        let reference = tiktoken_rs::cl100k_base().unwrap();
        let counter = TokenCounter::new();
        let alphabets: [Vec<char>; 5] = [
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZéüßñ".chars().collect(),
            " \t\n\r\u{a0}\u{3000}ab".chars().collect(),
            "0123456789.,-+ ".chars().collect(),
            "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ \n".chars().collect(),
            "aeiou sdmtlvrSDMTLVR' \n\t0123456789.,!?日本語中文한국어😀👍🏽\u{301}\u{200d}שלוםمرحباКириллица\r"
                .chars()
                .collect(),
        ];
        let mut rng = StdRng::seed_from_u64(100_256);
        for _ in 0..2_000 {
            let len = if rng.random_bool(0.1) { rng.random_range(100..400) } else { rng.random_range(0..80) };
            let text: String = if rng.random_bool(0.2) {
                let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                let alphabet = &alphabets[rng.random_range(0..alphabets.len())];
                (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect()
            };
            assert_same(&counter, &reference, &text);
        }
    }

    #[test]
    fn same_counts_as_tiktoken_on_this_crates_sources() {
        let reference = tiktoken_rs::cl100k_base().unwrap();
        let counter = TokenCounter::new();
        let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        let mut files = 0;
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|ext| ext == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    assert_same(&counter, &reference, &text);
                    files += 1;
                }
            }
        }
        assert!(files > 5, "found {files} source files");
    }
}
