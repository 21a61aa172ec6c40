//! Parity of the data engine with `transformers`, byte for byte and id for id.
//!
//! Every case is rendered by `runtime/src/data` and by `tokenizer.apply_chat_template(...,
//! tokenize=False)` in a Python subprocess (transformers 4.56.2, one call for all cases, JSON in and
//! out), on the real Llama 3.1 tokenizer (`.ci/fixtures.sh` fetches it). The rendered text must be
//! identical, the token ids identical to `tokenizer(text, add_special_tokens=False)["input_ids"]`, and
//! the assistant-only labels must mask exactly the ids of `apply_chat_template(messages[:-1],
//! add_generation_prompt=True, tokenize=True)`.
//!
//! It needs `TUNEC_FIXTURES` and `TUNEC_TEST_PYTHON`, which `.ci/run` sets; without them it fails
//! rather than passing without having compared anything.

#[path = "support/transformers.rs"]
mod transformers_reference;

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use transformers_reference::ask_python;
use tunec_runtime::data::template::{ChatTemplate, Message, TemplateError, Vars};
use tunec_runtime::data::tokenize::{ChatTokenizer, TokenizeError, Trained, IGNORE_INDEX};

/// Llama 3's `<|begin_of_text|>`.
const BOS_ID: u32 = 128_000;

/// Renders with transformers: the text, its ids, and for a conversation ending with an assistant
/// message the ids of its prompt (everything before, with the generation prompt).
const PYTHON: &str = r#"
import json, sys
from transformers import AutoTokenizer

req = json.load(sys.stdin)
tok = AutoTokenizer.from_pretrained(req["tokenizer_dir"])
out = []
for case in req["cases"]:
    kwargs = dict(case["kwargs"])
    if case["chat_template"] is not None:
        kwargs["chat_template"] = case["chat_template"]
    msgs = case["messages"]
    res = {}
    try:
        text = tok.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=case["add_generation_prompt"], **kwargs
        )
        res["text"] = text
        res["ids"] = tok(text, add_special_tokens=False)["input_ids"]
        if msgs and msgs[-1]["role"] == "assistant" and not case["add_generation_prompt"]:
            prompt = tok.apply_chat_template(msgs[:-1], tokenize=True, add_generation_prompt=True, **kwargs)
            if isinstance(prompt, dict) or hasattr(prompt, "input_ids"):
                prompt = prompt["input_ids"]
            res["prompt_ids"] = list(prompt)
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {e}"
    out.append(res)
json.dump({"transformers": __import__("transformers").__version__, "results": out}, sys.stdout, ensure_ascii=False)
"#;

/// A template exercising what chat templates use beyond Llama 3's: `namespace()`, slicing and negative
/// indexing, loop controls, Python string and dict methods, `tojson` with its options, Python
/// printing of `None`/`True`, `raise_exception` and `{% generation %}`.
const FEATURES_TEMPLATE: &str = r#"{%- set ns = namespace(count=0, system='') -%}
{%- if messages[0]['role'] == 'system' -%}
    {%- set ns.system = messages[0]['content'].strip() -%}
    {%- set rest = messages[1:] -%}
{%- else -%}
    {%- set rest = messages -%}
{%- endif -%}
{{ bos_token }}[SYS={{ ns.system }}]
{% for m in rest %}
    {% if m['role'] == 'tool' %}{% continue %}{% endif %}
    {% if loop.index > 3 %}{% break %}{% endif %}
    {% set ns.count = ns.count + 1 %}
<{{ m.role | upper }} name={{ m.get('name', 'anon') }} first={{ loop.first }}>
    {% if m.role == 'assistant' %}
        {% generation %}
{{ m.content.split() | join(' ') }}|{{ m.content | trim }}|{{ m | tojson }}<END>
        {% endgeneration %}
    {% else %}
{{ m.content.split() | join(' ') }}|{{ m.content | trim }}|{{ m | tojson }}
    {% endif %}
    {% for k, v in m.items() %}{{ k }}={{ v | length }};{% endfor %}

{% endfor %}
last={{ messages[-1].role }} n={{ ns.count }} upper={{ messages[-1]['content'].upper() }} starts={{ messages[-1]['content'].startswith('Hi') }}
words={{ messages[0].content.split()[:2] | tojson }} rev={{ messages[::-1][0].role }} none={{ none }} eos={{ eos_token }} pad={{ pad_token }}
{{ {'b': 1, 'a': [1.5, none, true, 'x"y\\z', 1e-05, 100000000000000000.0], 'c': {}, 'd': []} | tojson(indent=2) }}
{{ {'b': 1, 'a': 2, 'é': '<&>'} | tojson(separators=(',', ':'), sort_keys=true) }}
{{ messages[-2:] | tojson(indent=4) }}
{{ 'ünï' | tojson(ensure_ascii=true) }} {{ [1, [2, {}]] | tojson(indent='\t') }}
year={{ strftime_now('%Y') }}
{%- if messages[-1]['content'].startswith('RAISE') %}{{ raise_exception('Refusing: ' + messages[-1]['content'][5:]) }}{% endif %}
{%- if add_generation_prompt %}<ASSISTANT>{% endif %}"#;

/// Llama 3.1 Instruct's template (tools in the system or first user message, a single tool call as
/// JSON, `<|python_tag|>` builtin tools, `ipython` tool results), as published with
/// meta-llama/Llama-3.1-8B-Instruct; the npm fixture carries the base model's simpler template.
const LLAMA_3_1_INSTRUCT_TEMPLATE: &str = r#"{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}"#;

struct Case {
    name: String,
    messages: Vec<Message>,
    add_generation_prompt: bool,
    /// A template written here instead of the tokenizer's own.
    template: Option<&'static str>,
    kwargs: Map<String, Value>,
}

fn env_path(name: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => panic!(
            "{name} is not set: this test compares with transformers and must run through .ci/run \
             (which runs .ci/fixtures.sh and creates the Python venv), or with TUNEC_FIXTURES and \
             TUNEC_TEST_PYTHON exported as .ci/run does"
        ),
    }
}

fn m(role: &str, content: &str) -> Message {
    Message::new(role, content)
}

/// The conversations: with and without a system message, multi-turn, and contents that stress
/// whitespace handling, Unicode, template syntax and quoting.
fn conversations() -> Vec<(&'static str, Vec<Message>)> {
    vec![
        (
            "system-user-assistant",
            vec![
                m("system", "You are a helpful assistant."),
                m("user", "Hi! What is 2+2?"),
                m("assistant", "2+2 is 4."),
            ],
        ),
        ("no-system", vec![m("user", "Hello"), m("assistant", "Hello! How can I help?")]),
        (
            "multi-turn",
            vec![
                m("system", "Be brief."),
                m("user", "Name a colour."),
                m("assistant", "Blue."),
                m("user", "Another one?"),
                m("assistant", "Red."),
            ],
        ),
        (
            "whitespace",
            vec![
                m("system", "  \n  padded system\t \n"),
                m("user", "   leading and trailing   \n\n"),
                m("assistant", "\n\n  indented answer\n  second line  \n"),
            ],
        ),
        (
            "unicode",
            vec![
                m("user", "Grüße, 世界! Привет 🚀 — ñ café ½ \u{a0}nbsp\u{200b}zwsp"),
                m("assistant", "こんにちは 👋🏽 ∑ x² ≠ y"),
            ],
        ),
        (
            "template-syntax-and-quotes",
            vec![
                m(
                    "user",
                    "{{ not a template }} {% raw %} {# comment #} }}{{ {%- x -%} \"double\" 'single' \\backslash",
                ),
                m("assistant", "Braces: {}, {{}}, {{ x }}; quotes: \"'`; <|eot_id|> as text"),
            ],
        ),
        ("newlines", vec![m("user", "line1\nline2\r\n\nline3\n"), m("assistant", "a\n\nb\n\n\nc")]),
        (
            "tool-message",
            vec![
                m("user", "What is six times seven?"),
                m("assistant", "Let me compute it."),
                m("tool", "42"),
                m("assistant", "The answer is 42."),
            ],
        ),
        ("empty-assistant", vec![m("user", "Say nothing."), m("assistant", "")]),
        ("with-name-field", vec![m("user", "Hi there friend"), m("assistant", "Hello.").with("name", json!("bot"))]),
    ]
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let templates = [
        ("llama3_1", None),
        ("features", Some(FEATURES_TEMPLATE)),
        ("llama3_1_instruct", Some(LLAMA_3_1_INSTRUCT_TEMPLATE)),
    ];
    for (template_name, template) in templates {
        for (name, messages) in conversations() {
            for add_generation_prompt in [false, true] {
                let messages = if add_generation_prompt {
                    // A prompt: the conversation up to its last user message.
                    messages[..messages.len() - 1].to_vec()
                } else {
                    messages.clone()
                };
                cases.push(Case {
                    name: format!("{template_name}/{name}/agp={add_generation_prompt}"),
                    messages,
                    add_generation_prompt,
                    template,
                    kwargs: Map::new(),
                });
            }
        }
    }
    // The template raises; both sides must fail with its message.
    cases.push(Case {
        name: "features/raise_exception".to_string(),
        messages: vec![m("user", "RAISE this request")],
        add_generation_prompt: false,
        template: Some(FEATURES_TEMPLATE),
        kwargs: Map::new(),
    });
    cases.extend(tool_cases());
    // Extra keyword arguments reach the template and override special tokens.
    cases.push(Case {
        name: "llama3_1/kwargs-override-bos".to_string(),
        messages: vec![m("user", "Hi"), m("assistant", "Hello.")],
        add_generation_prompt: false,
        template: None,
        kwargs: [("bos_token".to_string(), json!("<BOS>"))].into_iter().collect(),
    });
    cases
}

fn kwargs(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn with_extra(message: Message, pairs: &[(&str, Value)]) -> Message {
    pairs.iter().fold(message, |message, (key, value)| message.with(key, value.clone()))
}

/// Llama 3.1 Instruct with tools: JSON schemas through `tojson(indent=4)`, tool calls, tool results
/// (text and objects), builtin tools, a pinned `date_string`, and the template's own exceptions.
fn tool_cases() -> Vec<Case> {
    let weather = json!({
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city — in °C.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city, e.g. \"Paris\""},
                    "days": {"type": "integer", "enum": [1, 2, 3]},
                    "ratio": {"type": "number", "default": 0.5}
                },
                "required": ["city"]
            }
        }
    });
    let call =
        |name: &str, arguments: Value| json!({"type": "function", "function": {"name": name, "arguments": arguments}});
    let tool_conversation = vec![
        m("user", "What's the weather in Paris?"),
        with_extra(
            m("assistant", ""),
            &[("tool_calls", json!([call("get_weather", json!({"city": "Paris", "days": 2}))]))],
        ),
        m("tool", "{\"temp_c\": 21.5, \"sky\": \"clear\"}"),
        m("assistant", "It is 21.5 °C and clear in Paris."),
    ];
    let object_result = vec![
        m("system", "Use tools."),
        m("user", "Weather?"),
        with_extra(m("assistant", ""), &[("tool_calls", json!([call("get_weather", json!({"city": "Oslo"}))]))]),
        m("tool", "").with("content", json!({"temp_c": -3, "sky": "snow", "alerts": []})),
        m("assistant", "Snowing, -3 °C."),
    ];
    let builtin = vec![
        m("user", "Search the news."),
        with_extra(m("assistant", ""), &[("tool_calls", json!([call("brave_search", json!({"query": "rust 2026"}))]))]),
    ];
    let two_calls = vec![
        m("user", "Two things."),
        with_extra(m("assistant", ""), &[("tool_calls", json!([call("a", json!({})), call("b", json!({}))]))]),
    ];
    let case = |name: &str, messages: &[Message], agp: bool, kw: Map<String, Value>| Case {
        name: format!("llama3_1_instruct/{name}/agp={agp}"),
        messages: messages.to_vec(),
        add_generation_prompt: agp,
        template: Some(LLAMA_3_1_INSTRUCT_TEMPLATE),
        kwargs: kw,
    };
    let tools = json!([weather]);
    vec![
        case("tools-in-user-message", &tool_conversation, false, kwargs(&[("tools", tools.clone())])),
        case(
            "tools-in-system-message",
            &tool_conversation,
            false,
            kwargs(&[
                ("tools", tools.clone()),
                ("tools_in_user_message", json!(false)),
                ("date_string", json!("01 Mar 2026")),
            ]),
        ),
        case("tools-prompt", &tool_conversation[..3], true, kwargs(&[("tools", tools.clone())])),
        case(
            "tool-result-object",
            &object_result,
            false,
            kwargs(&[("tools", tools.clone()), ("tools_in_user_message", json!(false))]),
        ),
        case(
            "builtin-tools",
            &builtin,
            false,
            kwargs(&[("builtin_tools", json!(["brave_search", "wolfram_alpha", "code_interpreter"]))]),
        ),
        case("two-tool-calls-raise", &two_calls, false, Map::new()),
        case("tools-without-user-raise", &[m("system", "Only a system message.")], true, kwargs(&[("tools", tools)])),
    ]
}

#[derive(Debug, Default)]
struct PythonResult {
    text: Option<String>,
    ids: Option<Vec<u32>>,
    prompt_ids: Option<Vec<u32>>,
    error: Option<String>,
}

fn run_transformers(python: &Path, tokenizer_dir: &PathBuf, cases: &[Case]) -> Vec<PythonResult> {
    let request = json!({
        "tokenizer_dir": tokenizer_dir,
        "cases": cases.iter().map(|c| json!({
            "messages": c.messages,
            "add_generation_prompt": c.add_generation_prompt,
            "chat_template": c.template,
            "kwargs": c.kwargs,
        })).collect::<Vec<_>>(),
    });
    let reply = ask_python(python, &["-c".as_ref(), PYTHON.as_ref()], &request);
    let ids = |v: &Value| -> Option<Vec<u32>> {
        v.as_array().map(|a| a.iter().map(|id| u32::try_from(id.as_u64().expect("an id")).expect("a u32 id")).collect())
    };
    let results = reply["results"].as_array().expect("results");
    assert_eq!(results.len(), cases.len());
    results
        .iter()
        .map(|r| PythonResult {
            text: r["text"].as_str().map(str::to_string),
            ids: ids(&r["ids"]),
            prompt_ids: ids(&r["prompt_ids"]),
            error: r["error"].as_str().map(str::to_string),
        })
        .collect()
}

/// Where two strings first differ, with some context, for failure messages.
fn first_difference(ours: &str, theirs: &str) -> String {
    let at = ours.bytes().zip(theirs.bytes()).position(|(a, b)| a != b).unwrap_or(ours.len().min(theirs.len()));
    let around = |s: &str| {
        let mut start = at.saturating_sub(40).min(s.len());
        while !s.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (at + 40).min(s.len());
        while !s.is_char_boundary(end) {
            end += 1;
        }
        format!("{:?}", &s[start..end])
    };
    format!("first difference at byte {at}:\n  ours:         {}\n  transformers: {}", around(ours), around(theirs))
}

#[test]
fn renders_and_tokenizes_as_transformers() {
    let fixtures = env_path("TUNEC_FIXTURES");
    let python = env_path("TUNEC_TEST_PYTHON");
    let tokenizer_dir = fixtures.join("llama3_1");
    let llama = ChatTokenizer::from_files(&tokenizer_dir)
        .unwrap_or_else(|e| panic!("cannot load {} (run .ci/fixtures.sh): {e}", tokenizer_dir.display()));
    let config = std::fs::read_to_string(tokenizer_dir.join("tokenizer_config.json")).expect("tokenizer_config.json");
    let features =
        llama.with_template(ChatTemplate::from_config(&config, Some(FEATURES_TEMPLATE)).expect("features template"));
    let instruct = llama.with_template(
        ChatTemplate::from_config(&config, Some(LLAMA_3_1_INSTRUCT_TEMPLATE)).expect("Llama 3.1 Instruct template"),
    );

    let cases = cases();
    let expected = run_transformers(&python, &tokenizer_dir, &cases);
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut prefix_checked = 0;
    for (case, theirs) in cases.iter().zip(&expected) {
        let tok = match case.template {
            None => &llama,
            Some(FEATURES_TEMPLATE) => &features,
            Some(_) => &instruct,
        };
        let ours = tok.template().render(&case.messages, case.add_generation_prompt, &case.kwargs);
        let text = match (&ours, &theirs.text, &theirs.error) {
            (Ok(ours), Some(text), _) => {
                if ours != text {
                    failures.push(format!("{}: rendered text differs\n{}", case.name, first_difference(ours, text)));
                    continue;
                }
                text
            }
            (Err(TemplateError::Raised(message)), None, Some(error)) => {
                if error != &format!("TemplateError: {message}") {
                    failures.push(format!("{}: ours raised {message:?}, transformers {error:?}", case.name));
                }
                compared += 1;
                continue;
            }
            (ours, _, error) => {
                failures.push(format!("{}: ours {ours:?}, transformers error {error:?}", case.name));
                continue;
            }
        };

        let ids = tok.encode_text(text).expect("encodes");
        if Some(&ids) != theirs.ids.as_ref() {
            failures.push(format!(
                "{}: token ids differ\n  ours:         {ids:?}\n  transformers: {:?}",
                case.name, theirs.ids
            ));
            continue;
        }
        if ids.first() == Some(&BOS_ID) && ids.iter().filter(|&&id| id == BOS_ID).count() != 1 {
            failures.push(format!("{}: BOS appears more than once", case.name));
        }

        if let Some(prompt_ids) = &theirs.prompt_ids {
            let labelled = tok.encode_conversation(&case.messages, &case.kwargs);
            if !ids.starts_with(prompt_ids) {
                // A template that renders the prompt differently from the conversation's start: TRL
                // fails here. This file's features template also writes the last message's text a
                // second time, after the conversation, so its turn has no one place in the text and
                // the data engine refuses it too.
                let refused = match &labelled {
                    Err(TokenizeError::PromptMismatch { prompt_tokens, .. }) => *prompt_tokens == prompt_ids.len(),
                    Err(TokenizeError::TurnNotFound { .. }) => case.template == Some(FEATURES_TEMPLATE),
                    _ => false,
                };
                if !refused {
                    failures.push(format!("{}: the prompt is not a prefix, but ours gave {labelled:?}", case.name));
                }
                compared += 1;
                continue;
            }
            if case.template != Some(FEATURES_TEMPLATE) {
                prefix_checked += 1;
            }
            match labelled {
                Ok(example) => {
                    let labels: Vec<i64> = ids
                        .iter()
                        .enumerate()
                        .map(|(i, &id)| if i < prompt_ids.len() { IGNORE_INDEX } else { i64::from(id) })
                        .collect();
                    if example.input_ids != ids
                        || !ids.starts_with(prompt_ids)
                        || example.prompt_tokens != prompt_ids.len()
                        || example.labels != labels
                    {
                        failures.push(format!(
                            "{}: labels differ: prompt of {} tokens (transformers {}), labels {:?}",
                            case.name,
                            example.prompt_tokens,
                            prompt_ids.len(),
                            example.labels
                        ));
                    }
                    // The trained part is the assistant's content and its end of turn.
                    if example.labels.last().copied() != ids.last().map(|&id| i64::from(id)) {
                        failures.push(format!("{}: the last token is not trained", case.name));
                    }
                }
                Err(e) => failures.push(format!("{}: cannot build labels: {e}", case.name)),
            }
        }
        compared += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from transformers:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    assert_eq!(compared, cases.len());
    // Every Llama conversation that ends with an assistant message had its labels checked.
    let llama_conversations = cases
        .iter()
        .filter(|c| {
            c.template != Some(FEATURES_TEMPLATE)
                && !c.add_generation_prompt
                && c.messages.last().is_some_and(|m| m.role() == "assistant")
                && !c.name.ends_with("-raise/agp=false")
        })
        .count();
    assert_eq!(prefix_checked, llama_conversations);
}

// -------------------------------------------------------------------------------------------------
// Every family: the real templates and tokenizers, single- and multi-turn, tool calls, reasoning,
// and the positions of the assistant tokens against independent references.

/// A chat template as a family's case renders it.
struct Variant {
    name: &'static str,
    /// The template's source; `None` is the tokenizer's own.
    source: Option<String>,
    /// The same template with `{% generation %}` markers for transformers' assistant mask, when there
    /// is one: a template that carries markers (TRL's `*_training.jinja`, which render the official
    /// text for Llama 3, Qwen2.5, Gemma, Gemma 3 and gpt-oss), or the official one with markers
    /// inserted here around each assistant turn (Qwen3, Mistral Nemo).
    marked: Option<String>,
    /// What a marked block holds of the text the template writes when it prompts
    /// (tests/parity/reference.py).
    block_headers: &'static [&'static str],
}

/// A family: its tokenizer fixture, its templates and the template variables its cases need.
struct Family {
    dir: &'static str,
    variants: Vec<Variant>,
    kwargs: Map<String, Value>,
}

fn trl_template(fixtures: &std::path::Path, name: &str) -> String {
    let path = fixtures.join("trl_chat_templates").join(format!("{name}.jinja"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{} (run .ci/fixtures.sh): {e}", path.display()))
}

fn own_template(fixtures: &std::path::Path, dir: &str) -> String {
    let config =
        std::fs::read_to_string(fixtures.join(dir).join("tokenizer_config.json")).expect("tokenizer_config.json");
    let config: Value = serde_json::from_str(&config).expect("JSON");
    config["chat_template"].as_str().expect("a chat template").to_string()
}

/// `source` with each `(from, to)` replaced, every `from` occurring exactly `count` times.
fn edit(source: &str, edits: &[(&str, &str, usize)]) -> String {
    edits.iter().fold(source.to_string(), |text, (from, to, count)| {
        assert_eq!(text.matches(from).count(), *count, "{from:?} in the template");
        text.replace(from, to)
    })
}

/// Qwen3's official template with markers from the end of `<|im_start|>assistant\n` to the end of
/// `<|im_end|>\n`, the text unchanged.
fn qwen3_marked(source: &str) -> String {
    edit(
        source,
        &[
            (
                "        {%- if loop.index0 > ns.last_query_index %}\n",
                "        {{- '<|im_start|>' + message.role + '\\n' }}\n        {%- generation %}\n        {%- if loop.index0 > ns.last_query_index %}\n",
                1,
            ),
            ("{{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content", "{{- '<think>\\n' + reasoning_content", 1),
            ("{{- '<|im_start|>' + message.role + '\\n' + content }}", "{{- content }}", 2),
            (
                "        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}",
                "        {{- '<|im_end|>\\n' }}\n        {%- endgeneration %}\n    {%- elif message.role == \"tool\" %}",
                1,
            ),
        ],
    )
}

/// Mistral Nemo's template with markers around an answer and its `</s>`, and around tool calls.
fn mistral_marked(source: &str) -> String {
    edit(
        source,
        &[
            (
                "{{- message[\"content\"] + eos_token}}",
                "{%- generation %}{{- message[\"content\"] + eos_token}}{%- endgeneration %}",
                1,
            ),
            ("{{- \"[TOOL_CALLS][\" }}", "{%- generation %}{{- \"[TOOL_CALLS][\" }}", 1),
            (
                "        {%- endfor %}\n    {%- elif message[\"role\"] == \"assistant\" %}",
                "        {%- endfor %}\n        {%- endgeneration %}\n    {%- elif message[\"role\"] == \"assistant\" %}",
                1,
            ),
        ],
    )
}

/// gpt-oss writes today's date into its system message; both sides get a fixed one.
fn pin_date(source: &str) -> String {
    edit(source, &[("strftime_now(\"%Y-%m-%d\")", "\"2026-03-01\"", 1)])
}

fn families(fixtures: &std::path::Path) -> Vec<Family> {
    let variant = |name, source: Option<String>, marked: Option<String>, block_headers| Variant {
        name,
        source,
        marked,
        block_headers,
    };
    let trl = |name: &str| trl_template(fixtures, name);
    let none = Map::new;
    vec![
        Family {
            dir: "llama3_1",
            variants: vec![variant("own", None, Some(trl("llama3_training")), &[])],
            kwargs: none(),
        },
        Family {
            dir: "llama3_2",
            variants: vec![variant("own", None, None, &[])],
            kwargs: kwargs(&[("date_string", json!("26 Jul 2024"))]),
        },
        Family {
            dir: "qwen2_5",
            variants: vec![variant("own", None, Some(trl("qwen2_5_training")), &["\n"])],
            kwargs: none(),
        },
        Family {
            dir: "qwen3",
            variants: vec![
                variant("own", None, Some(qwen3_marked(&own_template(fixtures, "qwen3"))), &[]),
                variant("trl_training", Some(trl("qwen3_training")), Some(trl("qwen3_training")), &[]),
            ],
            kwargs: none(),
        },
        Family {
            dir: "deepseek_v3",
            variants: vec![
                variant("own", None, None, &[]),
                variant(
                    "trl_training",
                    Some(trl("deepseekv3_training")),
                    Some(trl("deepseekv3_training")),
                    &["<｜Assistant｜>", "<｜tool▁outputs▁end｜>"],
                ),
            ],
            kwargs: none(),
        },
        Family {
            dir: "mistral_nemo",
            variants: vec![variant("own", None, Some(mistral_marked(&own_template(fixtures, "mistral_nemo"))), &[])],
            kwargs: none(),
        },
        Family {
            dir: "gptoss",
            variants: vec![variant(
                "trl",
                Some(pin_date(&trl("gptoss"))),
                Some(pin_date(&trl("gptoss_training"))),
                &["<|start|>assistant"],
            )],
            kwargs: none(),
        },
        Family {
            dir: "gemma2",
            variants: vec![variant("trl", Some(trl("gemma")), Some(trl("gemma_training")), &[])],
            kwargs: none(),
        },
        Family {
            dir: "gemma3",
            variants: vec![variant("own", None, Some(trl("gemma3_training")), &[])],
            kwargs: none(),
        },
        // cl100k_base, the tokenizer Phi-4's and OLMo 2's extend, with the package's ChatML template.
        Family { dir: "gpt4", variants: vec![variant("own", None, None, &[])], kwargs: none() },
        // Llama 2's SentencePiece tokenizer (byte fallback, a prefix space) with Mistral's `[INST]`
        // template, which its package does not ship.
        Family {
            dir: "llama2",
            variants: vec![variant(
                "mistral",
                Some(own_template(fixtures, "mistral_nemo")),
                Some(mistral_marked(&own_template(fixtures, "mistral_nemo"))),
                &[],
            )],
            kwargs: none(),
        },
    ]
}

/// One family case: a conversation rendered with one of the family's templates.
struct FamilyCase {
    name: String,
    family: usize,
    variant: usize,
    messages: Vec<Message>,
    kwargs: Map<String, Value>,
}

#[derive(Debug, Default)]
struct Reference {
    text: Option<String>,
    ids: Option<Vec<u32>>,
    error: Option<String>,
    markers: Option<Vec<bool>>,
    marked_error: Option<String>,
    prefixes: Option<Vec<bool>>,
    /// Turns whose edges fall inside a token, by either reference.
    straddles: Vec<u64>,
}

fn run_reference(python: &Path, request: &Value) -> Vec<Reference> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/parity/reference.py");
    let reply = ask_python(python, &[script.as_os_str()], request);
    let ids = |v: &Value| -> Option<Vec<u32>> {
        v.as_array().map(|a| a.iter().map(|id| u32::try_from(id.as_u64().expect("an id")).expect("a u32")).collect())
    };
    let mask = |v: &Value| -> Option<Vec<bool>> { v.as_array().map(|a| a.iter().map(|x| x == 1).collect()) };
    let results = reply["results"].as_array().expect("results");
    results
        .iter()
        .map(|r| Reference {
            text: r["text"].as_str().map(str::to_string),
            ids: ids(&r["ids"]),
            error: r["error"].as_str().map(str::to_string),
            markers: mask(&r["masks"]["markers"]),
            marked_error: r["marked_error"].as_str().map(str::to_string),
            prefixes: mask(&r["masks"]["prefixes"]),
            straddles: ["straddles", "marker_straddles"]
                .iter()
                .flat_map(|key| r[key].as_array().cloned().unwrap_or_default())
                .filter_map(|v| v.as_u64())
                .collect(),
        })
        .collect()
}

/// Which positions a mask marks, for failure messages.
fn positions(mask: &[bool]) -> Vec<usize> {
    mask.iter().enumerate().filter(|(_, &m)| m).map(|(i, _)| i).collect()
}

#[test]
fn every_family_renders_and_masks_assistant_turns_as_the_references() {
    let fixtures = env_path("TUNEC_FIXTURES");
    let python = env_path("TUNEC_TEST_PYTHON");
    let data: Value = serde_json::from_str(
        &std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/parity/conversations.json"))
            .expect("tests/parity/conversations.json"),
    )
    .expect("JSON");
    let families = families(&fixtures);
    let mut cases = Vec::new();
    for (f, family) in families.iter().enumerate() {
        for (v, _) in family.variants.iter().enumerate() {
            for conversation in data["conversations"].as_array().expect("conversations") {
                let messages = conversation["messages"]
                    .as_array()
                    .expect("messages")
                    .iter()
                    .map(|m| Message::from_object(m.as_object().expect("an object").clone()).expect("a message"))
                    .collect();
                let mut kwargs = family.kwargs.clone();
                if conversation["tools"] == json!(true) {
                    kwargs.insert("tools".to_string(), data["tools"].clone());
                }
                let name = conversation["name"].as_str().expect("a name");
                cases.push(FamilyCase {
                    name: format!("{}/{}/{name}", family.dir, family.variants[v].name),
                    family: f,
                    variant: v,
                    messages,
                    kwargs,
                });
            }
        }
    }
    let request = json!({
        "cases": cases.iter().map(|c| {
            let variant = &families[c.family].variants[c.variant];
            json!({
                "tokenizer_dir": fixtures.join(families[c.family].dir),
                "template": variant.source,
                "marked": variant.marked,
                "block_headers": variant.block_headers,
                "messages": c.messages,
                "kwargs": c.kwargs,
            })
        }).collect::<Vec<_>>(),
    });
    let references = run_reference(&python, &request);
    assert_eq!(references.len(), cases.len());

    // The data engine's tokenizers, one per family and template.
    let tokenizers: Vec<Vec<ChatTokenizer>> = families
        .iter()
        .map(|family| {
            let dir = fixtures.join(family.dir);
            let base = ChatTokenizer::from_files(&dir).or_else(|_| {
                // gpt-oss and Gemma 2 ship no template: load the tokenizer with a placeholder one.
                let config = std::fs::read_to_string(dir.join("tokenizer_config.json")).expect("config");
                let template = ChatTemplate::from_config(&config, Some("")).expect("template");
                let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer.json");
                Ok::<_, TokenizeError>(ChatTokenizer::new(template, tokenizer))
            });
            let base = base.unwrap_or_else(|e| panic!("{}: {e}", family.dir));
            let config = std::fs::read_to_string(dir.join("tokenizer_config.json")).expect("config");
            family
                .variants
                .iter()
                .map(|v| match &v.source {
                    None => base.with_template(ChatTemplate::from_config(&config, None).expect("own template")),
                    Some(source) => {
                        base.with_template(ChatTemplate::from_config(&config, Some(source)).expect("template"))
                    }
                })
                .collect()
        })
        .collect();

    let mut failures = Vec::new();
    let mut rendered = vec![0usize; families.len()];
    let mut multi_turn_masks = vec![0usize; families.len()];
    let mut tool_masks = vec![0usize; families.len()];
    let mut refused = 0;
    let mut straddled = 0;
    let only = std::env::var("TUNEC_PARITY_ONLY").unwrap_or_default();
    for (case, theirs) in cases.iter().zip(&references) {
        if !case.name.contains(&only) {
            continue;
        }
        let tok = &tokenizers[case.family][case.variant];
        let mut extra = case.kwargs.clone();
        let tools = extra.remove("tools").map(|t| minijinja::Value::from(minijinja::value::Serde(t)));
        let vars = Vars { extra: &extra, tools: tools.as_ref() };
        let turns: Vec<usize> = (0..case.messages.len()).filter(|&i| case.messages[i].role() == "assistant").collect();
        let ours = tok.encode_turns(&case.messages, &vars, &Trained::Turns(turns.clone()));
        let (text, ids) = match (&ours, &theirs.text, &theirs.error) {
            (Err(TokenizeError::Template(TemplateError::Raised(message))), None, Some(error)) => {
                if error != &format!("TemplateError: {message}") {
                    failures.push(format!("{}: ours raised {message:?}, transformers {error:?}", case.name));
                }
                refused += 1;
                continue;
            }
            // The template fails on the data (a method on None) without raising: both must fail.
            (Err(TokenizeError::Template(TemplateError::Render(_))), None, Some(error))
                if !error.starts_with("TemplateError") =>
            {
                refused += 1;
                continue;
            }
            (_, Some(text), _) => (text, theirs.ids.clone().expect("ids")),
            (ours, None, error) => {
                failures.push(format!("{}: transformers failed ({error:?}), ours {ours:?}", case.name));
                continue;
            }
        };
        let ours = match ours {
            Ok(ours) => ours,
            // A token across the edge of a turn: no exact mask exists, and the references agree.
            Err(TokenizeError::PromptMismatch { .. }) if !theirs.straddles.is_empty() => {
                straddled += 1;
                continue;
            }
            Err(e) => {
                failures.push(format!("{}: ours failed: {e}", case.name));
                continue;
            }
        };
        if &ours.text != text {
            failures.push(format!("{}: rendered text differs\n{}", case.name, first_difference(&ours.text, text)));
            continue;
        }
        if ours.example.input_ids != ids {
            failures.push(format!("{}: token ids differ", case.name));
            continue;
        }
        rendered[case.family] += 1;
        let mask: Vec<bool> = ours.example.labels.iter().map(|&l| l != IGNORE_INDEX).collect();
        let variant = &families[case.family].variants[case.variant];
        let mut references = Vec::new();
        match (&theirs.markers, &variant.marked) {
            (Some(markers), _) => references.push(("markers", markers)),
            (None, Some(_)) => failures.push(format!(
                "{}: the marked template gave no mask: {}",
                case.name,
                theirs.marked_error.as_deref().unwrap_or("?")
            )),
            (None, None) => {}
        }
        if let Some(prefixes) = &theirs.prefixes {
            references.push(("prefixes", prefixes));
        }
        if references.is_empty() {
            failures.push(format!("{}: no reference applies", case.name));
        }
        for (reference, expected) in references {
            if &mask != expected {
                failures.push(format!(
                    "{}: assistant tokens differ from the {reference} reference\n  ours:      {:?}\n  reference: {:?}\n  text: {:?}",
                    case.name,
                    positions(&mask),
                    positions(expected),
                    text
                ));
            }
        }
        if !theirs.straddles.is_empty() {
            failures.push(format!("{}: a turn's edge falls inside a token: {:?}", case.name, theirs.straddles));
        }
        if turns.len() > 1 {
            multi_turn_masks[case.family] += 1;
        }
        if case.messages.iter().any(|m| m.get("tool_calls").is_some()) {
            tool_masks[case.family] += 1;
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n\n{}", failures.len(), cases.len(), failures.join("\n\n"));
    if !only.is_empty() {
        return;
    }
    // Nothing passes by being skipped: every family renders single- and multi-turn conversations,
    // and every family with tools renders a tool call, with its masks compared. Llama 2's vocabulary
    // has Mistral's `[/INST]` and `[TOOL_CALLS]` as plain text, and `][` is one token of it: a token
    // across the tool call's edge by both references, so its tool-call rows are refused.
    for (f, family) in families.iter().enumerate() {
        assert!(rendered[f] >= 3 && multi_turn_masks[f] >= 1, "{}: {} rendered", family.dir, rendered[f]);
        if !family.dir.starts_with("gemma") && family.dir != "llama2" {
            assert!(tool_masks[f] >= 1, "{}: no tool call compared", family.dir);
        }
    }
    assert!(refused > 0, "no case was refused by a template");
    eprintln!(
        "{} cases: {} rendered with their masks compared, {} refused by the template on both sides, {} with a token \
         across a turn's edge on both sides",
        cases.len(),
        rendered.iter().sum::<usize>(),
        refused,
        straddled
    );
}
