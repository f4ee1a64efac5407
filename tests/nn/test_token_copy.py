"""The copy head: target values read off the task's tokens by attention over positions."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from skillbank.architectures import expected_tensors
from skillbank.nn.controller import Controller, ControllerConfig, TargetSpec, group_cross_entropy
from skillbank.nn.grid_trunk import GridSlice, TokenSlice
from skillbank.nn.token_copy import TokenCopyHead

FILLERS, COLOURS, POSITIONS = 4, 3, 6
VOCAB = 1 + FILLERS + COLOURS  # id 0 is padding
TOKENS = TokenSlice(offset=0, vocab=VOCAB, positions=POSITIONS)


def _sentences(colour: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Token one-hot features (B, V * (1 + P)): fillers everywhere, colour word at ``where``."""
    batch = len(colour)
    ids = torch.randint(1, 1 + FILLERS, (batch, POSITIONS))
    ids[torch.arange(batch), where] = 1 + FILLERS + colour
    one_hot = nn.functional.one_hot(ids, VOCAB).float()  # (B, P, V)
    return torch.cat([one_hot.sum(1).clamp(max=1), one_hot.flatten(1)], dim=1)


def test_copy_generalises_to_positions_never_seen_with_a_word() -> None:
    """Trained with each colour word only at two positions, it names the colour at the other
    four: the token -> value table is shared by all positions (a per-position linear map of the
    one-hot features cannot do this)."""
    torch.manual_seed(0)
    head = TokenCopyHead(TOKENS, (COLOURS,), hidden_dim=4)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(300):
        colour = torch.randint(0, COLOURS, (64,))
        where = 2 * colour + torch.randint(0, 2, (64,))  # colour c only at 2c, 2c + 1
        logits = head(_sentences(colour, where), torch.zeros(64, 4))
        loss = nn.functional.cross_entropy(logits, colour)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    colour = torch.randint(0, COLOURS, (300,))
    where = (2 * colour + 2 + torch.randint(0, 4, (300,))) % POSITIONS  # never seen there
    with torch.no_grad():
        guess = head(_sentences(colour, where), torch.zeros(300, 4)).argmax(-1)
    assert (guess == colour).float().mean() > 0.95


def test_no_tokens_copy_nothing_and_padding_is_never_attended() -> None:
    head = TokenCopyHead(TOKENS, (2, 3), hidden_dim=4)
    nn.init.normal_(head.values.weight)
    empty = torch.zeros(3, TOKENS.size)
    assert torch.equal(head(empty, torch.randn(3, 4)), torch.zeros(3, 5))
    # one token at position 2: every group copies that token's values
    features = torch.zeros(1, TOKENS.size)
    features[0, TOKENS.start + 2 * VOCAB + 5] = 1.0
    want = head.values.weight[:, 5]
    assert torch.allclose(head(features, torch.randn(1, 4))[0], want)


def test_window_reads_the_words_around_its_anchor() -> None:
    """With a window the one pointer's position p gives offset o's table applied to the token
    at p + o; tokens past either end give nothing."""
    head = TokenCopyHead(TOKENS, (2, 3), hidden_dim=4, window=1)
    nn.init.normal_(head.values.weight)
    features = torch.zeros(1, TOKENS.size)
    features[0, TOKENS.start + 0 * VOCAB + 5] = 1.0  # token 5 at position 0
    features[0, TOKENS.start + 1 * VOCAB + 6] = 1.0  # token 6 at position 1
    with torch.no_grad():
        head.query.weight.zero_()
        head.query.bias.zero_()
        head.position_embed.zero_()
        head.token_embed.weight.zero_()  # uniform attention over the two positions
        tables = head.values.weight.T.view(VOCAB, 3, 5)  # (V, offset -1/0/+1, C)
        # anchor 0: itself (offset 0) + position 1 (offset +1); anchor 1: position 0 (offset
        # -1) + itself
        want = (tables[5, 1] + tables[6, 2] + tables[5, 0] + tables[6, 1]) / 2
        assert torch.allclose(head(features, torch.randn(1, 4))[0], want, atol=1e-6)


def _phrase_config(tokens: TokenSlice, groups: tuple[int, ...], window: int) -> ControllerConfig:
    """A target-v3 controller over ``tokens`` whose target is a one-cell grid after them."""
    grid = GridSlice(offset=tokens.end, height=1, width=1, channels=sum(groups))
    return ControllerConfig(
        obs_dim=grid.offset + grid.size,
        latent_dim=2,
        hidden_dims=(8,),
        arg_dim=sum(groups),
        target=TargetSpec(grid, cell=0, groups=groups),
        target_tokens=tokens,
        copy_window=window,
    )


def test_phrase_target_names_one_thing_when_unsure_which() -> None:
    """Two phrases "colour noun" and a target drawn from either at random (nothing tells which):
    trained on the mixture likelihood (``Controller.target_loss``), a target-v3 controller
    names one of the two phrases whole, never the noun of one with the colour of the other.
    (Per-group pointers trained the same way, seeds 0-3, named a whole phrase 54-100% of the
    time.)"""
    nouns, colours, positions = 3, 3, 4
    vocab = 1 + nouns + colours
    tokens = TokenSlice(offset=0, vocab=vocab, positions=positions)
    config = _phrase_config(tokens, (nouns, colours), window=1)
    grid = config.target.grid  # type: ignore[union-attr]

    def batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
        noun = torch.stack([torch.randperm(nouns)[:2] for _ in range(size)])  # (B, 2) distinct
        colour = torch.randint(0, colours, (size, 2))
        ids = torch.stack(
            [1 + nouns + colour[:, 0], 1 + noun[:, 0], 1 + nouns + colour[:, 1], 1 + noun[:, 1]], 1
        )
        one_hot = nn.functional.one_hot(ids, vocab).float()  # (B, P, V)
        x = torch.cat(
            [one_hot.sum(1).clamp(max=1), one_hot.flatten(1), torch.zeros(size, grid.size)], 1
        )
        pairs = torch.cat(
            [nn.functional.one_hot(noun, nouns), nn.functional.one_hot(colour, colours)], -1
        ).float()  # (B, 2, C): the two phrases as targets
        return x, pairs

    torch.manual_seed(0)
    controller = Controller(config)
    optimizer = torch.optim.Adam(controller.parameters(), lr=3e-2)
    for _ in range(300):
        x, pairs = batch(64)
        wanted = pairs[torch.arange(64), torch.randint(0, 2, (64,))]
        loss = controller.target_loss(x, wanted).mean()
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    x, pairs = batch(500)
    with torch.no_grad():
        _, named = controller.query_and_argument(x)
    whole = (named[:, None, :] == pairs).all(-1).any(-1)
    assert whole.float().mean() > 0.95


def test_phrase_target_without_tokens_is_the_prior() -> None:
    config = _phrase_config(TOKENS, (2, 3), window=2)
    controller = Controller(config)
    nn.init.normal_(controller.target_copy.values.weight)  # type: ignore[union-attr]
    x = torch.zeros(3, config.obs_dim)  # no tokens
    target = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0]] * 3)
    query, _ = controller.query_and_argument(x)
    loss = controller.target_loss(x, target)
    prior_logits = controller.target_head(query)  # type: ignore[misc]
    assert torch.allclose(loss, group_cross_entropy(prior_logits, target, (2, 3)), atol=1e-5)
    loss.sum().backward()  # type: ignore[no-untyped-call]
    assert all(torch.isfinite(p.grad).all() for p in controller.parameters() if p.grad is not None)


@pytest.mark.parametrize(("history", "done"), [(0, False), (3, False), (3, True)])
@pytest.mark.parametrize(("window", "context"), [(0, 0), (2, 0), (0, 1), (2, 2)])
def test_target_v2_v3_round_trip_and_registry(
    history: int, done: bool, window: int, context: int
) -> None:
    """Stored configs come back equal and the registry knows the tensors (with ``done``: a
    history of targets and what was held, read by the copy head too: history-v3; with
    ``context``: self-attention layers over the tokens, target-v4)."""
    grid = GridSlice(offset=TOKENS.end, height=3, width=3, channels=7, groups=(4, 3))
    extra: dict[str, object] = {"history_targets": True, "held_cell": 0, "copy_done": True}
    config = ControllerConfig(
        obs_dim=TOKENS.end + grid.size,
        latent_dim=5,
        hidden_dims=(16,),
        arg_dim=7,
        target=TargetSpec(grid, cell=4, groups=(4, 3)),
        target_tokens=TOKENS,
        history_skills=history,
        copy_window=window,
        copy_context=context,
        **(extra if done else {}),  # type: ignore[arg-type]
    )
    stored = json.loads(json.dumps(config.to_json()))
    assert ControllerConfig.from_json(stored) == config
    plain = "skill-controller-target-v3" if window else "skill-controller-target-v2"
    plain = "skill-controller-target-v4" if context else plain
    with_history = "skill-controller-history-v3" if done else "skill-controller-history-v1"
    assert config.arch_id == (with_history if history else plain)
    assert config.done_blocks == (history + 1 if done else 0)
    controller = Controller(config)
    spec = expected_tensors(config.arch_id, stored)
    assert {k: tuple(v.shape) for k, v in controller.state_dict().items()} == {
        k: v.shape for k, v in spec.items()
    }
    x = torch.rand(4, config.obs_dim)
    hist = torch.zeros(4, config.history_dim) if history else None
    _, logits = controller.query_and_target_logits(x, hist)
    _, argument = controller.query_and_argument(x, hist)
    assert logits.shape == (4, 7) and argument.sum(-1).tolist() == [2.0] * 4
    generator = torch.Generator().manual_seed(0)
    _, drawn = controller.query_and_argument(x, hist, generator)  # sampled targets
    assert drawn.sum(-1).tolist() == [2.0] * 4 and set(drawn.unique().tolist()) == {0.0, 1.0}
    assert group_cross_entropy(logits, argument, (4, 3)).shape == (4,)


def test_copy_needs_a_target_head() -> None:
    with pytest.raises(ValueError, match="target_tokens needs a target"):
        ControllerConfig(obs_dim=TOKENS.end, latent_dim=2, target_tokens=TOKENS)


def test_copy_done_needs_a_copy_head_and_a_history_of_what_is_done() -> None:
    grid = GridSlice(offset=TOKENS.end, height=1, width=1, channels=2, groups=(2,))
    base = {"obs_dim": TOKENS.end + 2, "latent_dim": 2, "arg_dim": 2, "history_skills": 2}
    target = TargetSpec(grid, cell=0, groups=(2,))
    with pytest.raises(ValueError, match="copy_done needs a copy head"):
        ControllerConfig(**base, target=target, history_targets=True, copy_done=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="copy_done needs a copy head"):
        ControllerConfig(**base, target=target, target_tokens=TOKENS, copy_done=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="done_blocks must be >= 0"):
        TokenCopyHead(TOKENS, (2,), hidden_dim=4, done_blocks=-1)


def test_copy_window_needs_a_copy_head() -> None:
    with pytest.raises(ValueError, match="copy_window needs target_tokens"):
        ControllerConfig(obs_dim=TOKENS.end, latent_dim=2, copy_window=1)
    with pytest.raises(ValueError, match="window must be >= 0"):
        TokenCopyHead(TOKENS, (2,), hidden_dim=4, window=-1)


def _two_colours(batch: int, pairs: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sentences naming two colours of ``pairs`` (in either order, random positions) and, per
    row, the colours in sentence order (B, 2)."""
    pick = torch.tensor(pairs)[torch.randint(0, len(pairs), (batch,))]  # (B, 2)
    flip = torch.rand(batch) < 0.5
    colours = torch.where(flip[:, None], pick.flip(1), pick)
    first = torch.randint(0, POSITIONS - 1, (batch,))
    second = first + 1 + (torch.rand(batch) * (POSITIONS - 1 - first)).long()
    ids = torch.randint(1, 1 + FILLERS, (batch, POSITIONS))
    rows = torch.arange(batch)
    ids[rows, first] = 1 + FILLERS + colours[:, 0]
    ids[rows, second] = 1 + FILLERS + colours[:, 1]
    one_hot = nn.functional.one_hot(ids, VOCAB).float()
    return torch.cat([one_hot.sum(1).clamp(max=1), one_hot.flatten(1)], dim=1), colours


def _second_target_accuracy(done_blocks: int) -> float:
    """Train a copy head on "first the earlier colour, then (the first one done) the other",
    over the pairs {0, 1} and {1, 2}; its accuracy on the second target of {0, 2}."""
    torch.manual_seed(0)
    head = TokenCopyHead(TOKENS, (COLOURS,), hidden_dim=1, done_blocks=done_blocks)
    optimizer = torch.optim.Adam(head.parameters(), lr=5e-2)

    def logits(features: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        hidden = torch.zeros(len(features), 1)
        return head(features, hidden, done if done_blocks else None)  # type: ignore[no-any-return]

    for _ in range(400):
        features, colours = _two_colours(64, [(0, 1), (1, 2)])
        nothing = torch.zeros(64, COLOURS)
        done = nn.functional.one_hot(colours[:, 0], COLOURS).float()
        loss = nn.functional.cross_entropy(
            logits(features, nothing), colours[:, 0]
        ) + nn.functional.cross_entropy(logits(features, done), colours[:, 1])
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    features, colours = _two_colours(400, [(0, 2)])
    done = nn.functional.one_hot(colours[:, 0], COLOURS).float()
    with torch.no_grad():
        guess = logits(features, done).argmax(-1)
    return float((guess == colours[:, 1]).float().mean())


def test_a_done_input_passes_over_words_already_handled() -> None:
    """With ``done_blocks`` the pointers read what is done: trained to name the earlier colour,
    then (it done) the other one, it names the other one for a pair of colours never seen
    together (the rule is "pass over the word naming what is done", whatever the word); without
    the done input it cannot tell the two decisions apart."""
    assert _second_target_accuracy(1) > 0.95
    assert _second_target_accuracy(0) < 0.7


def test_the_done_input_starts_inert_and_is_required_with_done_dim() -> None:
    head = TokenCopyHead(TOKENS, (2, 3), hidden_dim=4, done_blocks=2)
    nn.init.normal_(head.values.weight)
    features, _ = _two_colours(5, [(0, 1)])
    hidden = torch.randn(5, 4)
    plain = TokenCopyHead(TOKENS, (2, 3), hidden_dim=4)
    plain.load_state_dict({k: v for k, v in head.state_dict().items() if k != "done_weight"})
    torch.testing.assert_close(head(features, hidden, torch.rand(5, 10)), plain(features, hidden))
    with pytest.raises(ValueError, match="done input"):
        head(features, hidden)
    with pytest.raises(ValueError, match="done input"):
        plain(features, hidden, torch.rand(5, 10))


MARKER = 1  # a filler word that, right before a colour, says "this one first"


def _marked_colours(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sentences with two colours at random positions, the later one preceded by the marker in
    half the rows; per row the colour to name: the marked one, else the earlier one."""
    spans = torch.tensor([(a, b) for a in range(POSITIONS) for b in range(a + 2, POSITIONS)])
    first, second = spans[torch.randint(0, len(spans), (batch,))].unbind(1)
    colours = torch.randint(0, COLOURS, (batch, 2))
    ids = torch.randint(MARKER + 1, 1 + FILLERS, (batch, POSITIONS))
    rows = torch.arange(batch)
    ids[rows, first] = 1 + FILLERS + colours[:, 0]
    ids[rows, second] = 1 + FILLERS + colours[:, 1]
    marked = torch.rand(batch) < 0.5
    ids[rows[marked], second[marked] - 1] = MARKER
    one_hot = nn.functional.one_hot(ids, VOCAB).float()
    features = torch.cat([one_hot.sum(1).clamp(max=1), one_hot.flatten(1)], dim=1)
    return features, torch.where(marked, colours[:, 1], colours[:, 0])


def _marked_accuracy(context: int) -> float:
    torch.manual_seed(0)
    head = TokenCopyHead(TOKENS, (COLOURS,), hidden_dim=1, context=context)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(400):
        features, colour = _marked_colours(64)
        loss = nn.functional.cross_entropy(head(features, torch.zeros(64, 1)), colour)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    head.eval()
    features, colour = _marked_colours(400)
    with torch.no_grad():
        guess = head(features, torch.zeros(400, 1)).argmax(-1)
    return float((guess == colour).float().mean())


def test_contextual_keys_point_at_a_word_by_its_neighbours() -> None:
    """Which colour to copy depends on the word before it: keys made of a word and its position
    alone cannot tell the marked colour from the other (about chance between the two); a
    context layer's keys can."""
    assert _marked_accuracy(1) > 0.9
    assert _marked_accuracy(0) < 0.75


def test_context_layers_ignore_padding_and_act_alike_in_training_and_evaluation() -> None:
    head = TokenCopyHead(TOKENS, (2, 3), hidden_dim=4, context=2)
    nn.init.normal_(head.values.weight)
    features, _ = _two_colours(6, [(0, 1)])
    short = features.clone()  # the last position made padding (no word there)
    short[:, TOKENS.start + (POSITIONS - 1) * VOCAB : TOKENS.end] = 0.0
    hidden = torch.randn(6, 4)
    trained = head(short, hidden)
    head.eval()
    with torch.no_grad():  # torch's fused inference path must give the same keys
        torch.testing.assert_close(head(short, hidden), trained.detach())
        torch.testing.assert_close(head(torch.zeros(2, TOKENS.size), hidden[:2]), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="context must be >= 0"):
        TokenCopyHead(TOKENS, (2,), hidden_dim=4, context=-1)
    with pytest.raises(ValueError, match="divide"):
        TokenCopyHead(TOKENS, (2,), hidden_dim=4, dim=5, context=1)
    with pytest.raises(ValueError, match="copy_context needs target_tokens"):
        ControllerConfig(obs_dim=TOKENS.end, latent_dim=2, copy_context=1)
