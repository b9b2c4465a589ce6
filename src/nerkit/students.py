"""Students for `nerkit distill`, made from a trained teacher (a NerModel):

  layers  the teacher's own encoder with K of its layers (the first K, or spread evenly), its word-shape
          embedding and head copied: a smaller model of the same family, a plain Hugging Face folder.
  conv    a convolutional tagger that is cheap on any CPU: the teacher's sub-word embeddings (and shape
          embedding) projected to `width` channels, K residual blocks of gated dilated convolutions,
          optionally one self-attention block over the whole window (`heads`), a linear head. Saved as a
          Hugging Face folder of model_type "nerkit-conv", which the Auto classes load once nerkit has
          registered it (importing nerkit.model does).
  lstm    the same tagger with K residual bidirectional LSTM blocks in place of the convolutions: each
          sub-word sees the whole window on both sides, at the price of a sequential loop over it.

Both come back as NerModels, so training, evaluation, export and serving treat them as any other model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForTokenClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import TokenClassifierOutput

from .errors import ModelError
from .folder import CONV_TYPE
from .model import NerModel


def spread(n: int, k: int) -> list[int]:
    """k of n layer indices, evenly apart, ending with the top one: 6, 2 -> [2, 5]; 6, 3 -> [1, 3, 5]."""
    return [round((i + 1) * n / k) - 1 for i in range(k)]


def bottom(n: int, k: int) -> list[int]:
    """The first k layers: each keeps the input it was trained on (bench/results/distill.txt compares)."""
    return list(range(k))


PICKS: dict[str, Callable[[int, int], list[int]]] = {"bottom": bottom, "spread": spread}


def _layer_list(base: nn.Module, n: int) -> tuple[nn.Module, str]:
    """The ModuleList holding the encoder's n layers (encoder.layer in BERT/RoBERTa, transformer.layer in
    DistilBERT, ...), and the attribute name under its parent."""
    for name, module in base.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            parent_name, _, attr = name.rpartition(".")
            return base.get_submodule(parent_name) if parent_name else base, attr
    raise ModelError(f"cannot find the {n} encoder layers of a {type(base).__name__} to cut", field="distill.student")


def layer_student(teacher: NerModel, layers: int, pick: str = "bottom", **_: object) -> NerModel:
    """A copy of the teacher keeping `layers` of its encoder layers, those PICKS[pick] chooses."""
    hf = copy.deepcopy(teacher.hf)
    n = hf.config.num_hidden_layers
    if layers > n:
        raise ModelError(f"the teacher has {n} layers; a layer student keeps at most that many, got {layers}",
                         field="distill.layers")
    parent, attr = _layer_list(hf.base_model, n)
    kept = PICKS[pick](n, layers)
    setattr(parent, attr, nn.ModuleList([getattr(parent, attr)[i] for i in kept]))
    hf.config.num_hidden_layers = layers
    student = NerModel(hf, shapes=teacher.shape_embedding is not None)
    if teacher.shape_embedding is not None:
        assert student.shape_embedding is not None
        student.shape_embedding.weight.data.copy_(teacher.shape_embedding.weight.data)
    return student


# ----------------------------------------------------------------------------------- the conv tagger

class ConvTaggerConfig(PretrainedConfig):
    model_type = CONV_TYPE

    def __init__(self, vocab_size: int = 30522, embedding_size: int = 384, hidden_size: int = 256,
                 num_layers: int = 4, kernel_size: int = 5, hidden_dropout_prob: float = 0.1,
                 pad_token_id: int = 0, max_position_embeddings: int = 512, attention_heads: int = 0,
                 lstm_layers: int = 0, **kwargs):
        super().__init__(**kwargs)
        # 0 for both: no attention block, no LSTM blocks (also folders saved before they existed)
        self.attention_heads, self.lstm_layers = attention_heads, lstm_layers
        self.pad_token_id = pad_token_id
        self.vocab_size, self.embedding_size, self.hidden_size = vocab_size, embedding_size, hidden_size
        self.num_layers, self.kernel_size = num_layers, kernel_size
        self.hidden_dropout_prob = hidden_dropout_prob
        # Convolutions have no length limit; windows are still cut to this many sub-words, as for the teacher.
        self.max_position_embeddings = max_position_embeddings


def dilation(i: int) -> int:
    """Block i's dilation: 1, 2, 4, 1, 2, 4, ...: the receptive field grows fast and gaps do not line up."""
    return 2 ** (i % 3)


class ConvBlock(nn.Module):
    """Pre-norm residual block: LayerNorm, a dilated convolution to twice the channels, a gated linear unit.

    The convolution is written as shifted copies of the sequence side by side and one Linear over them, not
    nn.Conv1d: the exported graph then holds a MatMul, which int8 quantization turns into integer dot
    products (VNNI where the CPU has them), where a Conv node would stay in fp32."""

    def __init__(self, width: int, kernel: int, dil: int, dropout: float):
        super().__init__()
        self.kernel, self.dil = kernel, dil
        self.norm = nn.LayerNorm(width)
        self.mix = nn.Linear(kernel * width, 2 * width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # x: (batch, tokens, width)
        n, pad = x.shape[1], self.dil * (self.kernel - 1) // 2
        h = nn.functional.pad(self.norm(x) * mask, (0, 0, pad, pad))  # zeros beyond both ends and on padding
        h = torch.cat([h[:, j * self.dil : j * self.dil + n] for j in range(self.kernel)], dim=-1)
        return x + self.dropout(nn.functional.glu(self.mix(h), dim=-1)) * mask


def reverse_within(mask: torch.Tensor) -> torch.Tensor:
    """Per row, the index that reverses its first `length` positions and leaves the padding after them in
    place (mask: (batch, tokens, 1), ones then zeros): gathering by it twice gives the row back."""
    n = mask.shape[1]
    lengths = mask.squeeze(-1).sum(1, keepdim=True).to(torch.long)  # (batch, 1)
    t = torch.arange(n, device=mask.device).unsqueeze(0)
    return torch.where(t < lengths, lengths - 1 - t, t)


class RecurrentBlock(nn.Module):
    """Pre-norm residual bidirectional LSTM, width/2 channels each way. The backward LSTM runs forward over
    each row reversed within its length (not nn.LSTM's bidirectional, which would start on the padding of
    shorter rows), so padding never reaches a real sub-word and the exported graph needs no sequence lengths."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.forward_lstm = nn.LSTM(width, width // 2, batch_first=True)
        self.backward_lstm = nn.LSTM(width, width - width // 2, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm(x) * mask
        ahead, _ = self.forward_lstm(h)
        rev = reverse_within(mask).unsqueeze(-1)
        behind, _ = self.backward_lstm(h.gather(1, rev.expand_as(h)))
        behind = behind.gather(1, rev.expand_as(behind))
        return x + self.dropout(torch.cat([ahead, behind], dim=-1)) * mask


class AttentionBlock(nn.Module):
    """Pre-norm residual multi-head self-attention over the whole window: what the convolutions' few
    sub-words of reach cannot see, the rest of the document. Written out (not nn.MultiheadAttention) so the
    exported graph is plain MatMuls and a Softmax, which int8 quantization handles."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # mask: (batch, tokens, 1)
        b, n, w = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) * (w // self.heads) ** -0.5  # (batch, heads, tokens, tokens)
        scores = scores + (1.0 - mask.transpose(1, 2).unsqueeze(1)) * torch.finfo(scores.dtype).min
        h = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, w)
        return x + self.dropout(self.out(h)) * mask


class ConvTaggerPreTrained(PreTrainedModel):
    config_class = ConvTaggerConfig
    base_model_prefix = "conv"

    def _init_weights(self, module: nn.Module) -> None:
        pass  # built from a teacher (or loaded): nothing to initialise here


class ConvTaggerModel(ConvTaggerPreTrained):
    def __init__(self, config: ConvTaggerConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.project = nn.Linear(config.embedding_size, config.hidden_size)
        self.blocks = nn.ModuleList([ConvBlock(config.hidden_size, config.kernel_size, dilation(i),
                                               config.hidden_dropout_prob) for i in range(config.num_layers)])
        self.recurrent = nn.ModuleList([RecurrentBlock(config.hidden_size, config.hidden_dropout_prob)
                                        for _ in range(config.lstm_layers)])
        heads = config.attention_heads
        self.attention = AttentionBlock(config.hidden_size, heads, config.hidden_dropout_prob) if heads else None
        self.norm = nn.LayerNorm(config.hidden_size)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        assert isinstance(value, nn.Embedding)
        self.embeddings = value

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None) -> torch.Tensor:
        x = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if attention_mask is None:
            attention_mask = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
        mask = attention_mask.unsqueeze(-1).to(x.dtype)  # padding stays zero, so no block sees it
        x = self.project(x) * mask
        for block in [*self.blocks, *self.recurrent]:
            x = block(x, mask)
        if self.attention is not None:
            x = self.attention(x, mask)
        return self.norm(x)


class ConvTaggerForTokenClassification(ConvTaggerPreTrained):
    def __init__(self, config: ConvTaggerConfig):
        super().__init__(config)
        self.conv = ConvTaggerModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels or 2)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.conv.embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.conv.set_input_embeddings(value)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None,
                **_: object) -> TokenClassifierOutput:
        logits = self.classifier(self.dropout(self.conv(input_ids, attention_mask, inputs_embeds)))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)
        return TokenClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(CONV_TYPE, ConvTaggerConfig, exist_ok=True)
AutoModelForTokenClassification.register(ConvTaggerConfig, ConvTaggerForTokenClassification, exist_ok=True)


def conv_student(teacher: NerModel, layers: int, width: int = 256, kernel: int = 5, heads: int = 0,
                 lstm: int = 0, **_: object) -> NerModel:
    """A conv tagger over the teacher's sub-word embeddings (copied, trained on) and shape embedding:
    `layers` convolution blocks, then `lstm` LSTM blocks, then one attention block of `heads` heads (0: none)."""
    t = teacher.hf.config
    emb = teacher.hf.get_input_embeddings()
    config = ConvTaggerConfig(vocab_size=emb.num_embeddings, embedding_size=emb.embedding_dim, hidden_size=width,
                              num_layers=layers, kernel_size=kernel, attention_heads=heads, lstm_layers=lstm,
                              hidden_dropout_prob=getattr(t, "hidden_dropout_prob", 0.1),
                              pad_token_id=t.pad_token_id if t.pad_token_id is not None else 0,
                              max_position_embeddings=getattr(t, "max_position_embeddings", 512),
                              num_labels=t.num_labels, id2label=dict(t.id2label), label2id=dict(t.label2id))
    hf = ConvTaggerForTokenClassification(config)
    _init(hf)
    hf.conv.embeddings.weight.data.copy_(emb.weight.data)
    student = NerModel(hf, shapes=teacher.shape_embedding is not None)
    if teacher.shape_embedding is not None:
        assert student.shape_embedding is not None
        student.shape_embedding.weight.data.copy_(teacher.shape_embedding.weight.data)
    return student


def _init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def lstm_student(teacher: NerModel, layers: int, width: int = 256, heads: int = 0, **_: object) -> NerModel:
    """The conv tagger with `layers` bidirectional LSTM blocks and no convolutions."""
    return conv_student(teacher, layers=0, width=width, heads=heads, lstm=layers)


STUDENTS: dict[str, Callable[..., NerModel]] = {"layers": layer_student, "conv": conv_student,
                                                "lstm": lstm_student}


def make_student(kind: str, teacher: NerModel, layers: int, width: int, kernel: int, pick: str = "bottom",
                 heads: int = 0) -> NerModel:
    """The registry's student of that kind (settings.StudentKind names the choices)."""
    return STUDENTS[kind](teacher, layers=layers, width=width, kernel=kernel, pick=pick, heads=heads)
