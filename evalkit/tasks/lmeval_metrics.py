"""An lm-eval task file's ``metric_list``, ``filter_list`` and ``generation_kwargs`` as evalkit spec keys
(lmeval_import.py). lm-eval 0.4.13's definitions: ``exact_match_hf_evaluate`` (regexes_to_ignore on both sides,
then ignore_case, ignore_punctuation, ignore_numbers: evalkit's ignore_regexes and normalise steps, same order),
``RegexFilter`` (findall, ``group_select``, first non-empty group, strip, fallback ``[invalid]``: evalkit's extract
rule with that fallback), ``corpus_chrf`` (chrF2; chrf++: word_order 2)."""

from __future__ import annotations

from pathlib import Path

from evalkit.errors import EvalkitError

METRICS = {
    "multiple_choice": {"acc", "acc_norm"},
    "generate_until": {"exact_match", "bleu", "rouge", "chrf", "chrf++"},
    "loglikelihood_rolling": {"word_perplexity", "byte_perplexity", "bits_per_byte", "perplexity"},
}
EXACT_MATCH_OPTIONS = {"ignore_case": "case", "ignore_punctuation": "punctuation", "ignore_numbers": "numbers"}
ENTRY_KEYS = {"metric", "aggregation", "higher_is_better"}
GENERATION_KWARGS = {"until", "max_gen_toks", "do_sample", "temperature"}


def read(path: Path, raw: dict, output_type: str) -> dict:
    """{metric name: its options} of the file's metric_list (lm-eval's defaults when it has none)."""
    entries = raw.get("metric_list")
    if entries is None:
        entries = [{"metric": "exact_match"}] if output_type == "generate_until" else []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise EvalkitError(f"{path}: metric_list must be a list of {{metric: name, ...}} entries")
    known = METRICS[output_type]
    chosen: dict[str, dict] = {}
    for number, entry in enumerate(entries):
        name = entry.get("metric")
        if not isinstance(name, str) or name not in known:
            raise EvalkitError(f"{path}: metric_list[{number}].metric {name!r} is outside the subset for {output_type}; "
                               f"use {', '.join(sorted(known))}")
        allowed = ENTRY_KEYS | (set(EXACT_MATCH_OPTIONS) | {"regexes_to_ignore"} if name == "exact_match" else set())
        extra = sorted(str(k) for k in entry if k not in allowed)
        if extra:
            raise EvalkitError(f"{path}: metric_list[{number}].{extra[0]} is outside the subset for metric {name}")
        aggregation = entry.get("aggregation")
        if aggregation is not None and aggregation not in ("mean", name, "perplexity", "weighted_perplexity"):
            raise EvalkitError(f"{path}: metric_list[{number}].aggregation {aggregation!r} is outside the subset; "
                               "drop it (evalkit aggregates each metric its own way)")
        chosen[name] = entry
    if "exact_match" in chosen and len(chosen) > 1:
        raise EvalkitError(f"{path}: metric_list mixes exact_match with {', '.join(k for k in chosen if k != 'exact_match')}; "
                           "evalkit scores a generation task one way: keep one kind")
    if {"chrf", "chrf++"} <= set(chosen):
        raise EvalkitError(f"{path}: metric_list has both chrf and chrf++; keep one")
    if output_type != "generate_until":
        for key in ("filter_list", "generation_kwargs"):
            if raw.get(key) is not None:
                raise EvalkitError(f"{path}: {key} applies to output_type generate_until only; drop it")
    return {"mc": "acc_norm" if "acc_norm" in chosen and "acc" not in chosen else "acc", "entries": chosen}


def generation_keys(path: Path, raw: dict, fewshot_delimiter: str, metrics: dict) -> dict:
    """The generation spec's stop, max_new_tokens and scoring."""
    kwargs = raw.get("generation_kwargs")
    kwargs = {"until": [fewshot_delimiter]} if kwargs is None else kwargs
    if not isinstance(kwargs, dict):
        raise EvalkitError(f"{path}: generation_kwargs must be a mapping (until, max_gen_toks)")
    extra = sorted(str(k) for k in kwargs if k not in GENERATION_KWARGS)
    if extra:
        raise EvalkitError(f"{path}: generation_kwargs.{extra[0]} is outside the subset; evalkit decodes greedily "
                           "with until and max_gen_toks")
    if kwargs.get("do_sample") or float(kwargs.get("temperature") or 0) != 0:
        raise EvalkitError(f"{path}: generation_kwargs do_sample/temperature: sampling is outside the subset; "
                           "evalkit decodes greedily (do_sample: false)")
    until = kwargs.get("until", [fewshot_delimiter])
    until = [until] if isinstance(until, str) else until
    if not isinstance(until, list) or not all(isinstance(s, str) and s for s in until):
        raise EvalkitError(f"{path}: generation_kwargs.until must be a list of non-empty strings")
    max_new = kwargs.get("max_gen_toks", 256)  # lm-eval's HFLM default
    if not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 1:
        raise EvalkitError(f"{path}: generation_kwargs.max_gen_toks must be a positive integer")
    entries = metrics["entries"]
    keys: dict = {"stop": until, "max_new_tokens": max_new}
    if "exact_match" in entries:
        keys["scoring"] = _exact_match(path, entries["exact_match"], _extract(path, raw.get("filter_list")))
    else:
        if raw.get("filter_list") is not None:
            raise EvalkitError(f"{path}: filter_list applies to exact_match scoring only here; drop it")
        metric = next((m for m in ("chrf", "chrf++") if m in entries), "bleu_rouge")
        keys["scoring"] = {"metric": metric}
    return keys


def _exact_match(path: Path, entry: dict, extract: dict) -> dict:
    normalise = []
    for key, step in EXACT_MATCH_OPTIONS.items():
        value = entry.get(key, False)
        if not isinstance(value, bool):
            raise EvalkitError(f"{path}: exact_match {key} must be true or false")
        if value:
            normalise.append(step)
    ignore = entry.get("regexes_to_ignore") or []
    if not isinstance(ignore, list) or not all(isinstance(p, str) and p for p in ignore):
        raise EvalkitError(f"{path}: exact_match regexes_to_ignore must be a list of regular expressions")
    return {"metric": "exact_match", **extract, "ignore_regexes": ignore, "normalise": normalise, "match": "text"}


def _extract(path: Path, filters) -> dict:
    """One filter of ``regex`` (optional) then ``take_first``; none: the whole generation is the answer."""
    if filters is None:
        return {}
    if not isinstance(filters, list) or len(filters) != 1 or not isinstance(filters[0], dict):
        # lm-eval reports each filter as its own score; evalkit's one headline would hide the others
        count = len(filters) if isinstance(filters, list) else 0
        raise EvalkitError(f"{path}: filter_list has {count} filters; evalkit scores one per task: keep one "
                           "(regex, then take_first)")
    chain = filters[0].get("filter")
    extra = sorted(str(k) for k in filters[0] if k not in ("name", "filter"))
    if extra or not isinstance(chain, list) or not all(isinstance(s, dict) for s in chain):
        raise EvalkitError(f"{path}: filter_list[0] needs name and filter (a list of {{function: ...}} steps)")
    functions = [step.get("function") for step in chain]
    if functions not in (["regex", "take_first"], ["take_first"]):
        raise EvalkitError(f"{path}: filter_list[0].filter {functions} is outside the subset; use "
                           "[regex, take_first] or [take_first]")
    if functions == ["take_first"]:
        return {}
    step = chain[0]
    extra = sorted(str(k) for k in step if k not in ("function", "regex_pattern", "group_select", "fallback"))
    if extra:
        raise EvalkitError(f"{path}: filter_list[0].filter[0].{extra[0]} is outside the subset")
    select = {0: "first", -1: "last"}.get(step.get("group_select", 0))
    if select is None:
        raise EvalkitError(f"{path}: filter_list[0].filter[0].group_select {step.get('group_select')!r} is outside "
                           "the subset; use 0 (first match) or -1 (last)")
    pattern = step.get("regex_pattern", r"#### (\-?[0-9\.\,]+)")  # lm-eval's RegexFilter default
    fallback = step.get("fallback", "[invalid]")
    if not isinstance(pattern, str) or not isinstance(fallback, str):
        raise EvalkitError(f"{path}: filter_list[0].filter[0] regex_pattern and fallback must be strings")
    return {"extract": [{"regex": pattern, "select": select}], "fallback": fallback}
