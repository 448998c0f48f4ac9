"""The video diffusion transformer's backbone (the ``dit`` family): patches, blocks, slots (no torch).

A :class:`DiTBackbone` describes the fixed part of a video diffusion transformer: the
latent video (``frames`` x ``latent_height`` x ``latent_width``, ``in_channels`` in and
``out_channels`` out, twice the latent channels with ``learned_sigma``; a Wan-style causal
VAE compresses time 4x and space 8x, so ``pixel_frames = (frames - 1) * 4 + 1``; LTX-Video's
8x and 32x; a per-frame image VAE, Latte's, 1x and 8x), its patchify (``patch_size`` = time x height x
width latent cells per token), the width (``heads`` x ``head_dim``), ``depth`` blocks, the
feed-forward width, the text conditioning and the timestep embedding; and the *styles*
in which real models differ, as plain data (``modulation``, ``positions``, ``qk_norm``,
``norm``, ``cross_attn_norm``, ``ff_activation``, ``text_mode``, ``text_projection``, and the fields
after ``vae_temporal_factor`` that LTX-Video, Latte and CogVideoX need). A style is one name here
plus one small function in ``ops/token_branches`` (a norm, a modulation, a positional table): a
model that differs only there is new data, not a new network. With ``text_mode`` joint
(CogVideoX) the projected text tokens lead the video tokens through every slot (the token stream is
``(B, text_tokens + T*H*W, D)``); which ops accept that, and what the text attends, is in ``ops/tokens``.

Slots are named ``block.{i}.{position}``, in execution order inside block ``i``:

* ``attn``: the block's self-attention token mixer (``tokens`` layout): full 3-D
  attention for Wan, or any token attention op (spatial, temporal, factorised,
  windowed, block-causal with a KV cache, sparse); ``none`` removes it;
* ``temporal``: an extra temporal layer (``frames`` layout; default ``none``): any op
  of the registry's frame contract, run on the block's tokens seen as frames
  ``(B*T, D, H, W)`` (a channels-last view; see ``families/dit/network``);
* ``cross``: cross-attention to the text tokens (``tok_xattn``) or ``none``;
* ``ff``: the feed-forward (``tok_ff``, with a ``funnel`` on its hidden width) or ``none``.

A block whose four slots are all ``none`` is *dropped*: it computes nothing and holds
no parameters (the AdaLN table rows belong to the ``attn`` and ``ff`` ops that read them),
so pruning whole blocks, as MobileVD prunes temporal blocks, is a choice at every slot of
the block. The token tensor contract of the ``tokens`` slots is stated once, in ``ops/tokens``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from vidnas._errors import SpecError
from vidnas.search_space._backbone import Backbone, SlotInfo
from vidnas.search_space._registry import SlotShape

__all__ = ["DIT_POSITIONS", "DiTBackbone", "ROTARY_POSITIONS", "STYLES"]

DIT_POSITIONS = ("attn", "temporal", "cross", "ff")
ROTARY_POSITIONS = ("rope3d", "rope_ltx")  # positional styles the attention applies (the others add tables)

# The styles implemented, per style field (a new model's style is added here and in _token_branches).
STYLES: dict[str, tuple[str, ...]] = {
    # adaln_table: one time projection to 6 rows of width D shared by all blocks, plus a learnt
    # (6, D) table per block (Wan 2.1; PixArt's adaLN-single, as LTX-Video and Latte use it).
    # expert: each modulated sub-layer maps SiLU(temb) by its own linear layer to a shift, scale and
    # gate for the video tokens and another for the text tokens (CogVideoX's expert AdaLN; needs
    # text_mode joint), and the head is a final norm then an AdaLayerNorm (CogVideoX).
    "modulation": ("adaln_table", "expert"),
    # rope3d: rotary positions, head_dim split into time / height / width parts (Wan);
    # rope_ltx: rotary positions across all heads, in seconds and pixels over a fixed base (LTX-Video);
    # sincos2d: a 2-D sin-cos table added to the patch tokens (PixArt, Latte);
    # sincos3d: a 3-D sin-cos table added to the patch tokens, a quarter of the width for time and
    # three quarters for the two spatial axes (CogVideoX 2B); none.
    "positions": ("rope3d", "rope_ltx", "sincos2d", "sincos3d", "none"),
    # RMSNorm of queries and keys over all heads at once (Wan, LTX-Video); an affine LayerNorm of
    # each head's queries and keys (CogVideoX); or none.
    "qk_norm": ("rms_across_heads", "none", "layer_norm"),
    # The norm before each modulated sub-layer: LayerNorm (Wan) or RMSNorm (LTX-Video), no affine; or
    # an affine LayerNorm (CogVideoX: its weight and bias shared by the text and video tokens).
    "norm": ("layer_norm", "rms_norm", "layer_norm_affine"),
    # cross: the text tokens are a context the `cross` slots attend (Wan); joint: the projected text
    # tokens travel with the video tokens as a prefix of the token sequence, through every slot
    # (CogVideoX; which ops accept that is stated in _ops_tokens).
    "text_mode": ("cross", "joint"),
    # The text projection: Linear, tanh-GELU, Linear (Wan's, PixArt's caption projection) or one Linear (CogVideoX).
    "text_projection": ("mlp", "linear"),
    # The feed-forward's activation: tanh-approximated GELU (Wan, LTX-Video, CogVideoX) or exact GELU.
    "ff_activation": ("gelu_tanh", "gelu"),
}


@dataclasses.dataclass(frozen=True)
class DiTBackbone(Backbone):
    """A video diffusion transformer (Wan 2.1's family; CogVideoX by its styles). Defaults: Wan 2.1 T2V 1.3B
    at 81x480x832."""

    family: ClassVar[str] = "dit"

    in_channels: int = 16  # latent channels in (plus any conditioning latents)
    out_channels: int = 16  # latent channels predicted
    patch_size: tuple[int, ...] = (1, 2, 2)  # latent cells per token: time, height, width
    heads: int = 12  # attention heads of the full-width blocks
    head_dim: int = 128  # width of a head; hidden width D = heads * head_dim
    depth: int = 30  # transformer blocks
    ffn_dim: int = 8960  # feed-forward hidden width at funnel 1
    text_dim: int = 4096  # width of the text encoder's tokens (umT5-XXL: 4096); 0 = no text conditioning
    text_tokens: int = 512  # text tokens per clip
    freq_dim: int = 256  # width of the sinusoidal timestep features
    eps: float = 1e-6  # epsilon of every norm
    modulation: str = "adaln_table"  # how the timestep modulates the blocks (see STYLES)
    positions: str = "rope3d"  # positional encoding (see STYLES)
    rope_theta: float = 10000.0  # rotary base
    rope_max_len: int = 1024  # positions per axis the rotary table holds (Wan: 1024)
    qk_norm: str = "rms_across_heads"  # query/key normalisation (see STYLES)
    norm: str = "layer_norm"  # norm of the modulated sub-layers (see STYLES)
    cross_attn_norm: bool = True  # an affine LayerNorm before cross-attention (Wan: yes)
    ff_activation: str = "gelu_tanh"  # feed-forward activation (see STYLES)
    frames: int = 21  # latent frames per clip
    latent_height: int = 60  # latent rows (pixels / vae_scale_factor)
    latent_width: int = 104  # latent columns
    vae_scale_factor: int = 8  # pixels per latent cell (recorded, not built)
    vae_temporal_factor: int = 4  # frames per latent frame after the first (causal video VAE; 1: per frame)
    # Styles of LTX-Video and Latte (the defaults are Wan's and change nothing there):
    qk_norm_eps: float = 0.0  # epsilon of the query/key norms; 0: eps (LTX-Video: 1e-5 beside eps 1e-6)
    head_norm: str = "layer_norm"  # the output head's norm (see STYLES["norm"]; LTX-Video: LayerNorm, RMSNorm blocks)
    frame_rate: float = 0.0  # decoded frames per second, for positions in seconds (rope_ltx; LTX-Video: 25)
    pos_base: int = 0  # sincos2d: token rows/columns at which positions are the indices (Latte: sample_size / patch)
    frame_pos_block: int = -1  # a 1-D sin-cos table over frames is added before this block (Latte: 1); -1: none
    cross_attn_per_frame: bool = False  # text keys/values projected for every frame (Latte's per-frame spatial blocks)
    learned_sigma: bool = False  # the head also predicts a variance: out_channels = 2 x the latent channels (Latte)
    # Styles of CogVideoX (the defaults are Wan's and change nothing there):
    text_mode: str = "cross"  # how the text tokens condition the blocks (see STYLES)
    text_projection: str = "mlp"  # the text tokens' projection to the width D (see STYLES)
    time_dim: int = 0  # width of the time embedding temb (0: the hidden width D; CogVideoX: 512)
    pos_scale_spatial: float = 1.0  # sincos3d: token rows and columns are divided by this (CogVideoX: 1.875)
    pos_scale_temporal: float = 1.0  # sincos3d: token frames are divided by this

    # The properties every family offers (see ``_backbone``) -----------------------------

    @property
    def latent_channels(self) -> int:
        return self.out_channels // 2 if self.learned_sigma else self.out_channels

    @property
    def condition_channels(self) -> int:
        return self.in_channels - self.latent_channels

    @property
    def output_channels(self) -> int:
        return self.out_channels

    @property
    def input_channels(self) -> int:
        return self.in_channels

    @property
    def context_dim(self) -> int:
        return self.text_dim

    @property
    def context_tokens(self) -> int:
        return self.text_tokens if self.text_dim else 0

    # Transformer geometry ------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Hidden width D."""
        return self.heads * self.head_dim

    @property
    def grid(self) -> tuple[int, int, int]:
        """Tokens per clip along time, height and width."""
        pt, ph, pw = self.patch_size
        return self.frames // pt, self.latent_height // ph, self.latent_width // pw

    @property
    def tokens(self) -> int:
        return math.prod(self.grid)

    @property
    def modulation_rows(self) -> int:
        """Rows of width D the shared time projection gives every block (shift, scale, gate x 2);
        0 when each sub-layer modulates itself (``expert``)."""
        return 6 if self.modulation == "adaln_table" else 0

    @property
    def temb_dim(self) -> int:
        """Width of the time embedding ``temb``."""
        return self.time_dim or self.dim

    @property
    def prefix_tokens(self) -> int:
        """Text tokens ahead of the video tokens in the token stream (``text_mode`` joint), else 0."""
        return self.text_tokens if self.text_mode == "joint" else 0

    @property
    def rotary(self) -> bool:
        """Whether the attention rotates queries and keys by position (``rope3d``, ``rope_ltx``)."""
        return self.positions in ROTARY_POSITIONS

    @property
    def rotary_width(self) -> int:
        """Columns of the per-token rotary tables: head_dim / 2 (shared by heads) or D / 2 (across heads)."""
        return self.dim // 2 if self.positions == "rope_ltx" else self.head_dim // 2

    @property
    def pos_interpolation(self) -> int:
        """``sincos2d``: the divisor of table positions, Latte's ``max(sample_size // 64, 1)``."""
        return max(self.pos_base * self.patch_size[1] // 64, 1)

    @property
    def rope_split(self) -> tuple[int, int, int]:
        """head_dim channels rotated by time, height and width positions (Wan's split)."""
        hw = 2 * (self.head_dim // 6)
        return self.head_dim - 2 * hw, hw, hw

    def slot_shape(self, position: str) -> SlotShape:
        """What the slot at ``position`` offers its op (sizes are the token grid)."""
        t, h, w = self.grid
        d = self.dim
        common = {"channels": d, "frames": t, "height": h, "width": w, "head_dim": self.head_dim,
                  "context_dim": d if self.text_dim else None,
                  "context_tokens": self.text_tokens if self.text_dim else None}
        # Joint text: the slot's tokens are the text prefix then the grid (the facts of a joint slot).
        joint = {"prefix_tokens": self.prefix_tokens} if self.prefix_tokens else {}
        if position == "temporal":  # the frame contract: tokens seen as channels-last frames
            return SlotShape(**common, temb_channels=self.temb_dim, norm_groups=math.gcd(32, d), channels_last=True,
                             extras=tuple(joint.items()))
        extras: dict[str, Any] = {"eps": self.eps, **joint}
        if position in ("attn", "ff"):
            extras.update(modulation=self.modulation, modulation_row=0 if position == "attn" else 3, norm=self.norm)
        if position in ("attn", "cross") and self.qk_norm_eps:  # only when set: Wan's slot facts stay as they were
            extras.update(qk_eps=self.qk_norm_eps)
        if position == "attn":
            extras.update(positions=self.positions, qk_norm=self.qk_norm)
        elif position == "cross":
            extras.update(cross_attn_norm=self.cross_attn_norm, qk_norm=self.qk_norm)
            if self.cross_attn_per_frame:
                extras.update(per_frame=True)
        elif position == "ff":
            extras.update(ffn_dim=self.ffn_dim, ff_activation=self.ff_activation)
        return SlotShape(**common, temb_channels=self.temb_dim, layout="tokens", extras=tuple(sorted(extras.items())))

    def slots(self) -> list[SlotInfo]:
        """Every slot in execution order: ``block.{i}.{attn,temporal,cross,ff}``."""
        shapes = {p: self.slot_shape(p) for p in DIT_POSITIONS}
        return [SlotInfo(f"block.{i}.{p}", "block", i, i, p, shapes[p])
                for i in range(self.depth) for p in DIT_POSITIONS]

    # Validation -------------------------------------------------------------------------

    def validate(self, field: str = "backbone") -> None:
        """Raise :class:`SpecError` naming the first invalid field."""
        positive = ("in_channels", "out_channels", "heads", "head_dim", "depth", "ffn_dim", "freq_dim", "frames",
                    "latent_height", "latent_width", "vae_scale_factor", "vae_temporal_factor", "rope_max_len")
        for name in positive:
            if getattr(self, name) < 1:
                raise SpecError(f"{field}.{name}", getattr(self, name), "must be >= 1")
        for name in ("text_dim", "text_tokens", "time_dim"):
            if getattr(self, name) < 0:
                raise SpecError(f"{field}.{name}", getattr(self, name), "must be >= 0")
        if self.text_dim and self.text_tokens < 1:
            raise SpecError(f"{field}.text_tokens", self.text_tokens, "must be >= 1 when text_dim > 0")
        if self.learned_sigma and self.out_channels % 2:
            raise SpecError(f"{field}.out_channels", self.out_channels, "must be even with learned_sigma",
                            "the head predicts the noise and a variance per latent channel")
        if self.latent_channels > self.in_channels:
            raise SpecError(f"{field}.out_channels", self.out_channels,
                            f"exceeds in_channels={self.in_channels}", "extra input channels are conditioning latents")
        if not 0 < self.eps < 1:
            raise SpecError(f"{field}.eps", self.eps, "must be in (0, 1)")
        if not 0 <= self.qk_norm_eps < 1:
            raise SpecError(f"{field}.qk_norm_eps", self.qk_norm_eps, "must be in [0, 1)", "0 uses eps")
        if self.head_norm not in STYLES["norm"]:
            raise SpecError(f"{field}.head_norm", self.head_norm, "is not an implemented style",
                            f"choose one of {list(STYLES['norm'])}")
        for name in ("frame_rate", "pos_base"):
            if getattr(self, name) < 0:
                raise SpecError(f"{field}.{name}", getattr(self, name), "must be >= 0")
        if not -1 <= self.frame_pos_block < self.depth:
            raise SpecError(f"{field}.frame_pos_block", self.frame_pos_block,
                            f"must be a block index below depth={self.depth}, or -1 for none")
        if self.rope_theta <= 1:
            raise SpecError(f"{field}.rope_theta", self.rope_theta, "must be > 1")
        for name in ("pos_scale_spatial", "pos_scale_temporal"):
            if getattr(self, name) <= 0:
                raise SpecError(f"{field}.{name}", getattr(self, name), "must be > 0")
        for name, allowed in STYLES.items():
            if getattr(self, name) not in allowed:
                raise SpecError(f"{field}.{name}", getattr(self, name), "is not an implemented style",
                                f"choose one of {list(allowed)}")
        self._validate_joint_text(field)
        if len(self.patch_size) != 3 or any(not isinstance(p, int) or p < 1 for p in self.patch_size):
            raise SpecError(f"{field}.patch_size", self.patch_size, "must be three positive integers (t, h, w)")
        if self.freq_dim % 2:
            raise SpecError(f"{field}.freq_dim", self.freq_dim, "must be even (cosines and sines)")
        if self.positions == "rope3d" and (self.head_dim % 2 or min(self.rope_split) < 2):
            raise SpecError(f"{field}.head_dim", self.head_dim,
                            "is too small or odd for 3-D rotary positions", "use an even head_dim >= 12")
        if self.positions == "rope_ltx":
            if self.head_dim % 2 or self.dim < 6:
                raise SpecError(f"{field}.head_dim", self.head_dim, "gives too narrow or odd a width for rotary "
                                "positions across heads", "use an even head_dim and heads * head_dim >= 6")
            if self.frame_rate <= 0:
                raise SpecError(f"{field}.frame_rate", self.frame_rate, "must be > 0 with rope_ltx positions",
                                "they are in seconds: LTX-Video uses 25")
        if self.positions == "sincos2d" and self.dim % 4:
            raise SpecError(f"{field}.head_dim", self.head_dim, f"gives a width {self.dim} that is not a multiple "
                            "of 4, which a 2-D sin-cos table needs")
        if self.frame_pos_block >= 0 and self.dim % 2:
            raise SpecError(f"{field}.frame_pos_block", self.frame_pos_block,
                            f"needs an even width for its sin-cos table (width {self.dim})")
        for name, size, patch in (("frames", self.frames, self.patch_size[0]),
                                  ("latent_height", self.latent_height, self.patch_size[1]),
                                  ("latent_width", self.latent_width, self.patch_size[2])):
            if size % patch:
                raise SpecError(f"{field}.{name}", size, f"is not a multiple of the patch size {patch}",
                                self._pixel_hint(name, patch))
            if self.positions == "rope3d" and size // patch > self.rope_max_len:
                raise SpecError(f"{field}.{name}", size, f"gives more than rope_max_len={self.rope_max_len} "
                                "positions along its axis")

    def _validate_joint_text(self, field: str) -> None:
        """The styles that only make sense together: joint text, its expert modulation, its positions."""
        if self.text_mode == "joint" and not self.text_dim:
            raise SpecError(f"{field}.text_mode", self.text_mode, "needs text tokens (text_dim is 0)",
                            "set text_dim and text_tokens, or use text_mode `cross`")
        if (self.text_mode == "joint") != (self.modulation == "expert"):
            if self.text_mode == "joint":
                raise SpecError(f"{field}.modulation", self.modulation, "cannot modulate joint text tokens "
                                "apart from the video tokens", "use modulation `expert` with text_mode `joint`")
            raise SpecError(f"{field}.modulation", self.modulation, "modulates text tokens that travel with the "
                            "video tokens, and this backbone's text is a cross-attention context",
                            "use text_mode `joint` with modulation `expert`")
        if self.modulation == "adaln_table" and self.time_dim not in (0, self.dim):
            raise SpecError(f"{field}.time_dim", self.time_dim, f"must be the hidden width {self.dim} (or 0) with "
                            "modulation `adaln_table`, whose tables the time embedding is added to",
                            "use time_dim 0, or modulation `expert`")
        if self.text_mode == "joint" and self.rotary:
            raise SpecError(f"{field}.positions", self.positions, "rotary positions are not implemented for "
                            "joint text tokens", "use a table added to the tokens (`sincos3d`, `sincos2d`) or `none` "
                            "with text_mode `joint`")
        if self.text_mode == "joint" and self.frame_pos_block >= 0:
            raise SpecError(f"{field}.frame_pos_block", self.frame_pos_block, "adds a table over the frames of the "
                            "tokens, which joint text tokens precede", "use -1 with text_mode `joint`")
        if self.positions == "sincos3d" and self.dim % 16:
            raise SpecError(f"{field}.heads", self.heads, f"gives a width {self.dim} that sincos3d positions cannot "
                            "split (a quarter for time, three eighths per spatial axis, each in sine-cosine "
                            "pairs)", "use heads * head_dim divisible by 16")

    def _pixel_hint(self, name: str, patch: int) -> str:
        if name == "frames":
            return f"latent frames must be a multiple of {patch}"
        return f"pixel sizes must be multiples of {patch * self.vae_scale_factor}"

    def resized(self, *, frames: int | None = None, height: int | None = None, width: int | None = None,
                width_mult: float | None = None) -> DiTBackbone:
        """This transformer at ``frames`` decoded frames and ``height`` x ``width`` pixels, with
        ``width_mult`` times its heads (head_dim kept, at least one head; the feed-forward
        width scales with them, rounded to a multiple of 8)."""
        factor = self.vae_scale_factor
        changes = self.size_changes(frames=frames, height=height, width=width, width_mult=width_mult,
                                    pixel_step=(factor * self.patch_size[1], factor * self.patch_size[2]))
        if width_mult is not None:
            heads = max(1, round(self.heads * width_mult))
            changes["heads"] = heads
            changes["ffn_dim"] = max(8, round(self.ffn_dim * heads / self.heads / 8) * 8)
        result = dataclasses.replace(self, **changes)
        try:
            result.validate()
        except SpecError as exc:
            if exc.field == "backbone.frames":
                raise SpecError("frames", frames, exc.problem, exc.hint) from None
            raise
        return result
