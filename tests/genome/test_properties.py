"""Property tests over random valid genomes (the generator the search reuses)."""

import random
import re

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import growrnn as gr
from growrnn.genome import ACTIVATIONS, WEIGHTED, Genome, GenomeSpace, parse, random_genome
from tests.cells.reference import reference_forward

spaces = st.builds(GenomeSpace, max_memory_states=st.integers(0, 3), max_depth=st.integers(1, 5),
                   p_share=st.sampled_from([0.0, 0.15, 0.4]))
seeds = st.integers(0, 2**32 - 1)


@settings(max_examples=150, deadline=None)
@given(seed=seeds, space=spaces)
def test_round_trips_text_json_text(seed: int, space: GenomeSpace) -> None:
    g = random_genome(random.Random(seed), space)
    assert g == random_genome(random.Random(seed), space)  # the seed reproduces it
    back = Genome.from_json(g.to_json())
    assert back.to_dict() == g.to_dict()
    assert parse(back.to_text()) == g
    assert parse(g.to_text()).to_text() == g.to_text()


def _rename(text: str, prefix: str) -> str:
    keep = {"x", "h", *ACTIVATIONS, *WEIGHTED}
    return re.sub(r"\b([A-Za-z_]\w*)\b", lambda m: m[1] if m[1] in keep else prefix + m[1], text)


@settings(max_examples=150, deadline=None)
@given(seed=seeds, space=spaces, prefix=st.sampled_from(["n_", "zz", "Q"]))
def test_key_survives_renaming(seed: int, space: GenomeSpace, prefix: str) -> None:
    g = random_genome(random.Random(seed), space)
    renamed = parse(_rename(g.to_text(), prefix))
    assert renamed.key == g.key


@settings(max_examples=40, deadline=None)
@given(seed=seeds, space=spaces, layers=st.integers(1, 2))
def test_compiles_to_finite_outputs_and_gradients_matching_the_reference(seed, space, layers) -> None:
    g = random_genome(random.Random(seed), space)
    torch.manual_seed(seed % 1000)
    rnn = gr.GenomeRNN(g, 3, 4, num_layers=layers, dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    out, state = rnn(x)
    loss = out.tanh().sum() + sum(s.tanh().sum() for s in state)
    loss.backward()
    assert torch.isfinite(out).all() and all(torch.isfinite(s).all() for s in state)
    grads = [p.grad for p in rnn.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr_).all() for gr_ in grads)
    ref_out, ref_state = reference_forward(rnn, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-9, atol=1e-9)
    for s, r in zip(state, ref_state, strict=True):
        torch.testing.assert_close(s, r, rtol=1e-9, atol=1e-9)
