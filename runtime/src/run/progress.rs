//! What a run shows while it works: one permanent line per decision and per finished node, and,
//! while nodes run, either live progress bars (a terminal) or plain timestamped lines (CI logs,
//! pipes).
//!
//! The executor and its node tasks talk to a [`Reporter`] from several threads; the reporter owns
//! the output. In [`Mode::Bars`] (indicatif, drawn on stdout) each running node has a bar: a data
//! step counts the records it has read, a job shows its elapsed time and the last line its script
//! printed, and permanent lines are printed above the bars. In [`Mode::Plain`] permanent lines go
//! straight to the output, a job's log lines are streamed as `  <node> | <line>`, and a data step
//! prints its count when it passes 10,000, 20,000, 50,000, 100,000, ... records (then every million),
//! so a log stays readable, and diffable: the same data gives the same lines however long the step
//! takes.
//!
//! Neither mode passes on a script's terminal control sequences (tqdm moves the cursor up to
//! redraw nested bars): plain lines are text, and a bar's message is one line. A bar is cleared
//! when its job ends, so the job's last lines (the saved adapter, the evaluation's metrics) are
//! printed above the bars first, in full, rather than cut to the bar's width and erased.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Live bars on a terminal.
    Bars,
    /// One line per event, for logs and pipes.
    Plain,
}

impl Mode {
    /// Bars when stdout is a terminal and neither `CI` nor `TERM=dumb` says otherwise.
    pub fn detect() -> Mode {
        use std::io::IsTerminal as _;
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        if std::io::stdout().is_terminal() && !ci && !dumb {
            Mode::Bars
        } else {
            Mode::Plain
        }
    }
}

/// What kind of work a bar follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// A data step: records read.
    Rows,
    /// A process (an entry script, pip): elapsed time and its last line.
    Process,
}

/// The first count a plain-mode data step reports.
const FIRST_MILESTONE: u64 = 10_000;
/// Past this, counts are reported every this many records.
const MILESTONE_STEP: u64 = 1_000_000;

/// The next count after `count` that a plain-mode data step reports: 10,000, 20,000, 50,000,
/// 100,000, 200,000, 500,000, then every million. Counts, not time, so that the lines of a log
/// depend on the data only.
fn next_milestone(count: u64) -> u64 {
    if count >= MILESTONE_STEP {
        return (count / MILESTONE_STEP + 1) * MILESTONE_STEP;
    }
    let mut decade = FIRST_MILESTONE;
    loop {
        for m in [decade, 2 * decade, 5 * decade] {
            if m > count {
                return m;
            }
        }
        decade *= 10;
    }
}

struct Live {
    bar: Option<ProgressBar>,
    /// The last count a plain-mode data step reported (0 before the first).
    reported: u64,
    /// The last lines a process printed, progress bars left out (bars mode).
    tail: VecDeque<String>,
}

/// How many of a job's last lines stay on the screen when its bar is cleared.
const TAIL_LINES: usize = 3;

/// `text` without terminal control sequences (CSI such as tqdm's cursor-up `ESC [ A`, OSC, other
/// escapes) and without control characters other than tabs.
pub fn without_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates, then one final byte.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC, DCS and the like: up to BEL or ESC \.
                Some(']' | 'P' | '_' | '^' | 'X') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                // Other escapes: intermediates, then one final character.
                Some(c) if ('\u{20}'..='\u{2f}').contains(&c) => {
                    while chars.next_if(|c| ('\u{20}'..='\u{2f}').contains(c)).is_some() {}
                    chars.next();
                }
                _ => {}
            },
            '\u{9b}' => {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether a line is a progress bar's redraw (`42%|████      | 84/200 [00:03<...]`).
fn is_progress_bar(line: &str) -> bool {
    line.contains("%|")
}

/// The output of a run, shared by the executor and its node tasks.
pub struct Reporter {
    mode: Mode,
    out: Mutex<Box<dyn Write + Send>>,
    multi: Option<MultiProgress>,
    live: Mutex<HashMap<String, Live>>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter").field("mode", &self.mode).finish_non_exhaustive()
    }
}

impl Reporter {
    /// A reporter writing to `out` in `mode`; bars are drawn on stdout, so [`Mode::Bars`] is meant
    /// for `out` = stdout.
    pub fn new(mode: Mode, out: Box<dyn Write + Send>) -> Reporter {
        let multi = (mode == Mode::Bars).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        Reporter { mode, out: Mutex::new(out), multi, live: Mutex::new(HashMap::new()) }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A permanent line (a decision, a summary, an error).
    pub fn line(&self, text: &str) {
        if let Some(multi) = &self.multi {
            if multi.println(text).is_ok() {
                return;
            }
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// `node` starts `work`.
    pub fn start(&self, node: &str, work: Work) {
        let bar = self.multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new_spinner());
            let template = match work {
                Work::Rows => "{spinner} {prefix}: {pos} records read ({per_sec}) {msg}",
                Work::Process => "{spinner} {prefix} [{elapsed}] {wide_msg}",
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.set_prefix(node.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.insert(node.to_owned(), Live { bar, reported: 0, tail: VecDeque::new() });
    }

    /// A data step's count of records read so far. In plain mode, a line for every milestone
    /// ([`next_milestone`]) passed since the last call, so that a final call with the step's total
    /// prints the same lines whatever the timing of the calls before it.
    pub fn rows(&self, node: &str, rows: u64) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = live.get_mut(node) else { return };
        if let Some(bar) = &entry.bar {
            bar.set_position(rows);
            return;
        }
        let mut passed = Vec::new();
        while next_milestone(entry.reported) <= rows {
            entry.reported = next_milestone(entry.reported);
            passed.push(entry.reported);
        }
        drop(live);
        for count in passed {
            self.line(&format!("  {node} | {count} records read"));
        }
    }

    /// A line a running process printed (already stripped of its line ending).
    pub fn log(&self, node: &str, text: &str) {
        let text = without_controls(text);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        match live.get_mut(node).filter(|l| l.bar.is_some()) {
            Some(Live { bar: Some(bar), tail, .. }) => {
                bar.set_message(text.to_owned());
                if !is_progress_bar(text) {
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(text.to_owned());
                }
            }
            _ => {
                drop(live);
                self.line(&format!("  {node} | {text}"));
            }
        }
    }

    /// Prints the last lines `node`'s process printed as permanent lines, before its bar is
    /// cleared (bars mode; plain mode printed every line already).
    pub fn keep_last_lines(&self, node: &str) {
        let tail: Vec<String> = {
            let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            match live.get_mut(node) {
                Some(entry) if entry.bar.is_some() => entry.tail.drain(..).collect(),
                _ => return,
            }
        };
        for line in tail {
            self.line(&format!("  {node} | {line}"));
        }
    }

    /// `node` stopped working; its bar goes away (the caller prints the summary line).
    pub fn finish(&self, node: &str) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Live { bar: Some(bar), .. }) = live.remove(node) {
            bar.finish_and_clear();
            if let Some(multi) = &self.multi {
                multi.remove(&bar);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_mode_streams_log_lines_with_the_node_name_and_skips_blank_ones() {
        let buffer = Shared::default();
        let reporter = Reporter::new(Mode::Plain, Box::new(buffer.clone()));
        reporter.line("run sft: no previous run");
        reporter.start("sft", Work::Process);
        reporter.log("sft", "{'loss': 2.5}\r\n");
        reporter.log("sft", "   ");
        reporter.rows("sft", 10);
        reporter.finish("sft");
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8");
        assert_eq!(text, "run sft: no previous run\n  sft | {'loss': 2.5}\n");
    }

    #[test]
    fn plain_mode_counts_records_at_milestones_whatever_the_timing() {
        assert_eq!(
            [0, 9_999, 10_000, 19_999, 20_000, 49_999, 50_000, 99_999, 500_000, 999_999, 1_000_000, 7_300_000]
                .map(next_milestone),
            [
                10_000, 10_000, 20_000, 20_000, 50_000, 50_000, 100_000, 100_000, 1_000_000, 1_000_000, 2_000_000,
                8_000_000
            ]
        );
        // The same total gives the same lines, however the calls before it were spaced.
        let lines = |calls: &[u64]| {
            let buffer = Shared::default();
            let reporter = Reporter::new(Mode::Plain, Box::new(buffer.clone()));
            reporter.start("parts", Work::Rows);
            calls.iter().for_each(|&n| reporter.rows("parts", n));
            reporter.finish("parts");
            let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8");
            text
        };
        let expected = "  parts | 10000 records read\n  parts | 20000 records read\n  parts | 50000 records read\n";
        assert_eq!(lines(&[60_000]), expected);
        assert_eq!(lines(&[0, 5_000, 10_000, 10_001, 35_000, 60_000, 60_000]), expected);
        assert_eq!(lines(&[9_999]), "");
    }

    #[test]
    fn control_sequences_are_left_out() {
        // tqdm's nested bars: cursor up, then the line; colours; a title; a bell.
        assert_eq!(without_controls("\u{1b}[A 33%|███▎      | 100/300"), " 33%|███▎      | 100/300");
        assert_eq!(without_controls("\u{1b}[1;31merror\u{1b}[0m: x"), "error: x");
        assert_eq!(without_controls("\u{1b}]0;title\u{7}done\u{7}"), "done");
        assert_eq!(without_controls("\u{1b}]8;;http://x\u{1b}\\link\u{1b}]8;;\u{1b}\\"), "link");
        assert_eq!(without_controls("\u{1b}(Bplain\u{1b}7\tx"), "plain\tx");
        assert!(matches!(without_controls("{'loss': 2.5}"), Cow::Borrowed(_)));
    }

    #[test]
    fn plain_mode_passes_no_control_sequences() {
        let buffer = Shared::default();
        let reporter = Reporter::new(Mode::Plain, Box::new(buffer.clone()));
        reporter.start("sft", Work::Process);
        reporter.log("sft", "\u{1b}[A 33%|███▎      | 100/300");
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8");
        assert_eq!(text, "  sft |  33%|███▎      | 100/300\n");
    }
}
