//! Layout cases: input on the left, the canonical text on the right. Every case goes through
//! `check`, which also formats the output again (it must not move) and compares the trees.

use super::format;
use crate::diagnostics::{Code, FileId};
use crate::syntax::parse_file;

/// Formats `input`, expects `expected` (written without the first newline), and checks that the
/// output is a fixed point with the same tree.
fn check(input: &str, expected: &str) {
    let expected = expected.strip_prefix('\n').unwrap_or(expected);
    let out = format(input).expect("the input parses");
    assert_eq!(out, expected, "\n--- got:\n{out}\n--- expected:\n{expected}");
    assert_eq!(format(&out).expect("the output parses"), out, "formatting the output moved it");
    let before = parse_file(input, FileId(0)).expect("parses").without_spans();
    let after = parse_file(&out, FileId(0)).expect("parses").without_spans();
    assert_eq!(before, after, "the tree changed");
}

#[test]
fn blocks_take_one_field_per_line_and_align_equals() {
    check(
        "pipeline p { target sagemaker { region = \"us-east-1\" role = env(\"R\") bucket = env(\"B\") }\n\
         train t = sft(m, data = c) { epochs = 2  learning_rate = 2e-4\n  gradient_checkpointing = true } }",
        r#"
pipeline p {
  target sagemaker {
    region = "us-east-1"
    role   = env("R")
    bucket = env("B")
  }
  train t = sft(m, data = c) {
    epochs                 = 2
    learning_rate          = 2e-4
    gradient_checkpointing = true
  }
}
"#,
    );
}

#[test]
fn blank_lines_end_alignment_groups_and_collapse_to_one() {
    check(
        "pipeline p {\n\n  budget = $150\n\n\n\n  description = \"d\"\n\n}\n",
        r#"
pipeline p {
  budget = $150

  description = "d"
}
"#,
    );
}

#[test]
fn values_stay_on_one_line_when_they_fit() {
    check(
        "pipeline p {\n  dataset d = file(\"x.jsonl\") { columns = {q:string,a : string,} }\n  train t = sft(m, data = s.train) {\n    method = qlora{r=32,alpha=64}\n    metrics = [ a , b , ]\n    compute = \"ml.g5.2xlarge\"   x   2\n  }\n}",
        r#"
pipeline p {
  dataset d = file("x.jsonl") {
    columns = { q: string, a: string }
  }
  train t = sft(m, data = s.train) {
    method  = qlora { r = 32, alpha = 64 }
    metrics = [a, b]
    compute = "ml.g5.2xlarge" x 2
  }
}
"#,
    );
}

#[test]
fn values_that_do_not_fit_break_one_element_per_line() {
    check(
        "pipeline p { dataset raw = hf_dataset(\"UCSC-VLAA/MedReason-but-with-a-much-longer-name\", split = \"train[:10000]\", revision = \"main\") {\n\
         columns = { question: string, answer: string, reasoning: string, options: [string], explanation: string } } }",
        r#"
pipeline p {
  dataset raw = hf_dataset(
    "UCSC-VLAA/MedReason-but-with-a-much-longer-name",
    split = "train[:10000]",
    revision = "main",
  ) {
    columns = {
      question: string
      answer: string
      reasoning: string
      options: [string]
      explanation: string
    }
  }
}
"#,
    );
}

#[test]
fn literals_keep_their_spelling() {
    check(
        "pipeline p { param steps = 10_000 param lr = 2E-4 budget = $1_000.50 train t = sft(m) { max_runtime = 1h30m disk = 1.5KiB } }",
        r#"
pipeline p {
  param steps = 10_000
  param lr = 2E-4
  budget = $1_000.50
  train t = sft(m) {
    max_runtime = 1h30m
    disk        = 1.5KiB
  }
}
"#,
    );
}

#[test]
fn triple_quoted_strings_are_copied_verbatim() {
    check(
        "pipeline p {\n      chat c = chat_template(d) {\n    system = \"\"\"\n        Be brief.\n          Really.\n        \"\"\"\n  user = \"{q}\"\n}\n}",
        "
pipeline p {
  chat c = chat_template(d) {
    system = \"\"\"
        Be brief.
          Really.
        \"\"\"
    user = \"{q}\"
  }
}
",
    );
}

#[test]
fn empty_bodies_are_dropped_but_empty_values_kept() {
    check(
        "pipeline p { target local {} model m = f() {} merge x = merge(t) { dtype = bf16, q = full {}, l = [] } }\ndefaults train {}",
        r"
pipeline p {
  target local
  model m = f()
  merge x = merge(t) {
    dtype = bf16
    q     = full {}
    l     = []
  }
}
defaults train {}
",
    );
}

#[test]
fn comments_on_their_own_lines_stay_before_what_follows() {
    check(
        "// expect: clean\n// set: a=1\n\n// The pipeline.\npipeline p {\n    // Budget.\n  budget = $1\n\n  /* block\n     two lines */\n  model m = f()\n  // at the end\n}\n// after\n",
        r"
// expect: clean
// set: a=1

// The pipeline.
pipeline p {
  // Budget.
  budget = $1

  /* block
     two lines */
  model m = f()
  // at the end
}
// after
",
    );
}

#[test]
fn trailing_comments_stay_at_the_end_of_their_line() {
    check(
        "pipeline p {\n  budget = $1   // money   \n  train t = sft(m) { epochs = 2, /* two */ seed = 1 }\n}",
        r"
pipeline p {
  budget = $1 // money
  train t = sft(m) {
    epochs = 2 /* two */
    seed   = 1
  }
}
",
    );
}

#[test]
fn a_comment_inside_a_value_breaks_it() {
    check(
        "pipeline p { train t = sft(m) { method = qlora { r = 32, // rank\n alpha = 64 } metrics = [a, /* b */ c] } }",
        r"
pipeline p {
  train t = sft(m) {
    method = qlora {
      r     = 32 // rank
      alpha = 64
    }
    metrics = [
      a, /* b */
      c,
    ]
  }
}
",
    );
}

#[test]
fn comments_between_tokens_move_to_the_end_of_the_line() {
    check(
        "pipeline p { param lr /* the rate */ = // why\n 2e-4\n model /* m */ m = f(\"x\") }",
        r#"
pipeline p {
  param lr = 2e-4 /* the rate */ // why
  model m = f("x") /* m */
}
"#,
    );
}

#[test]
fn a_line_comment_inside_an_element_does_not_swallow_the_next_comment() {
    check(
        "pipeline p {\n  merge // one\n  m /* two */ = merge(t)\n}",
        r"
pipeline p {
  merge m = merge(t) // one
  /* two */
}
",
    );
}

#[test]
fn comments_in_headers_and_empty_blocks_are_kept_inside() {
    check(
        "pipeline /* a */ p { target local { /* nothing yet */ } model m = f() /* b */ {} }",
        r"
pipeline p {
  /* a */
  target local {
    /* nothing yet */
  }
  model m = f() {
    /* b */
  }
}
",
    );
}

#[test]
fn empty_files_and_comment_only_files() {
    check("", "");
    check("  \n\n", "");
    check("// only a comment\n\n\n/* and another */", "// only a comment\n\n/* and another */\n");
}

#[test]
fn crlf_line_endings_become_lf() {
    check("pipeline p {\r\n  budget = $1 // c\r\n}\r\n", "pipeline p {\n  budget = $1 // c\n}\n");
}

#[test]
fn text_that_does_not_parse_is_an_error() {
    let err = format("pipeline p { model m f() }").unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(err[0].code, Code::Syntax);
    let err = format("pipeline p { a = 99999999999999999999 }").unwrap_err();
    assert_eq!(err[0].code, Code::BadLiteral);
}
