#!/usr/bin/env python3
"""Writes N deterministic MedReason-shaped rows (question, answer, reasoning) as JSONL.

For benchmarking the data step (tunec's `prepare` against the seed's Python). Each row is a
clinical vignette question, a short answer and a multi-step reasoning chain built from seeded
choices over vocabularies, so every row differs (deduplication keeps them all) while the length
stays in MedReason's range: about 300-700 Llama 3.1 tokens per rendered conversation with the
long deep-thinking system prompt. Standard library only; the same N gives the same bytes.

Usage: gen_medreason.py N OUT.jsonl
"""

import json
import random
import sys

AGES = list(range(18, 90))
SEXES = ["man", "woman"]
SYMPTOMS = [
    "fatigue",
    "pallor",
    "glossitis",
    "paresthesias in both feet",
    "exertional dyspnea",
    "night sweats",
    "weight loss of 6 kg",
    "intermittent fever",
    "polyuria",
    "polydipsia",
    "chest pain radiating to the left arm",
    "a productive cough",
    "hemoptysis",
    "jaundice",
    "right upper quadrant pain",
    "diarrhea",
    "bone pain",
    "easy bruising",
    "gum bleeding",
    "confusion",
    "ataxia",
    "blurred vision",
    "palpitations",
    "syncope",
    "joint swelling",
    "a malar rash",
    "photosensitivity",
    "muscle weakness",
    "constipation",
    "cold intolerance",
]
HISTORY = [
    "a 20-year history of alcohol use",
    "a vegan diet for eight years",
    "type 2 diabetes on metformin",
    "a partial gastrectomy",
    "Crohn disease of the terminal ileum",
    "long-term proton pump inhibitor use",
    "recent travel to sub-Saharan Africa",
    "smoking 30 pack-years",
    "chronic kidney disease stage 3",
    "rheumatoid arthritis treated with methotrexate",
    "hypertension on lisinopril",
    "no notable history",
    "a family history of colon cancer",
    "HIV infection on antiretroviral therapy",
    "recent cardiac surgery",
]
FINDINGS = [
    "macrocytes and hypersegmented neutrophils on the smear",
    "a mean corpuscular volume of 112 fL",
    "microcytic hypochromic red cells",
    "a ferritin of 8 ng/mL",
    "an elevated methylmalonic acid",
    "a normal homocysteine",
    "a serum calcium of 7.9 mg/dL",
    "a prolonged prothrombin time",
    "an ALT of 420 U/L",
    "bilateral hilar lymphadenopathy",
    "an ejection fraction of 35%",
    "ST elevation in leads II, III and aVF",
    "a positive antinuclear antibody",
    "a TSH of 14 mIU/L",
    "a hemoglobin A1c of 9.2%",
    "a creatinine of 2.1 mg/dL",
    "ring-enhancing lesions on MRI",
    "decreased vibration sense in the lower limbs",
    "a positive Romberg sign",
    "splenomegaly",
]
DIAGNOSES = [
    ("vitamin B12 deficiency", "intramuscular cyanocobalamin"),
    ("folate deficiency", "oral folic acid"),
    ("iron deficiency anemia", "oral ferrous sulfate and a search for blood loss"),
    ("hypothyroidism", "levothyroxine"),
    ("sarcoidosis", "oral corticosteroids"),
    ("inferior myocardial infarction", "emergent percutaneous coronary intervention"),
    ("systemic lupus erythematosus", "hydroxychloroquine"),
    ("vitamin K deficiency", "vitamin K"),
    ("acute hepatitis", "supportive care and viral serologies"),
    ("toxoplasmosis", "pyrimethamine and sulfadiazine"),
    ("hypocalcemia from vitamin D deficiency", "calcium and cholecalciferol"),
    ("diabetic nephropathy", "an SGLT2 inhibitor and an ACE inhibitor"),
    ("tuberculosis", "RIPE therapy"),
    ("subacute combined degeneration", "parenteral vitamin B12"),
    ("heart failure with reduced ejection fraction", "guideline-directed medical therapy"),
]
QUESTIONS = [
    "What is the most likely diagnosis?",
    "Which treatment is most appropriate?",
    "Which mechanism best explains these findings?",
    "What is the next best step in management?",
    "Which laboratory test would confirm the diagnosis?",
    "Which complication is this patient most at risk of?",
]
STEPS = [
    "First, consider the key findings: {f1} together with {s1} narrows the differential considerably.",
    "The history of {h} is important, because it changes the pretest probability of several causes.",
    "{f2} argues against the alternatives that would otherwise explain {s2}.",
    "A common pitfall is to stop at the first abnormal value; here {f1} must be read together with {f2}.",
    "Pathophysiologically, the process that leads to {d} also accounts for {s1} and {s2}.",
    "If this were a different condition, we would expect a different pattern, not {f2}.",
    "Next, weigh the timeline: the symptoms developed over weeks, which fits {d} better than an acute cause.",
    "The age of {age} and the sex ({sex}) shift the likelihood only slightly in this case.",
    "Treatment follows from the mechanism: {t} addresses the underlying cause rather than the symptom.",
    "Before concluding, check consistency: {s1}, {s2} and {f1} are all explained by {d}.",
    "Guidelines recommend confirming with a targeted test before committing to long-term therapy.",
    "Finally, consider the complications of untreated {d}, which make prompt recognition important.",
]


def row(i: int) -> dict:
    r = random.Random(i * 7919 + 17)
    age, sex = r.choice(AGES), r.choice(SEXES)
    s1, s2, s3 = r.sample(SYMPTOMS, 3)
    f1, f2 = r.sample(FINDINGS, 2)
    h = r.choice(HISTORY)
    d, t = r.choice(DIAGNOSES)
    q = r.choice(QUESTIONS)
    question = (
        f"A {age}-year-old {sex} with {h} presents with {s1}, {s2} and {s3} for {r.randint(2, 16)} weeks. "
        f"Examination and tests show {f1} and {f2}. {q} (case {i})"
    )
    fields = dict(f1=f1, f2=f2, s1=s1, s2=s2, h=h, d=d, t=t, age=age, sex=sex)
    # 6-28 steps of ~25-30 tokens each: conversations of roughly 300-700 tokens with the system prompt.
    n_steps = r.randint(6, 28)
    steps = [r.choice(STEPS).format(**fields) for _ in range(n_steps)]
    reasoning = "\n".join(f"{k + 1}. {s}" for k, s in enumerate(steps))
    if q.startswith("Which treatment") or q.startswith("What is the next"):
        answer = f"{t[0].upper()}{t[1:]}, because the findings indicate {d}."
    else:
        answer = f"{d[0].upper()}{d[1:]}."
    return {"question": question, "answer": answer, "reasoning": reasoning}


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    n, out = int(sys.argv[1]), sys.argv[2]
    with open(out, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(row(i), ensure_ascii=False))
            f.write("\n")


if __name__ == "__main__":
    main()
