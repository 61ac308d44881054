"""`mtvr train dgrpo`: difficulty-aware GRPO on MTVR-RL, as a small subclass of TRL's GRPOTrainer.

TRL keeps: the training loop, accelerate/FSDP/DeepSpeed, the repeat sampler (G rollouts per prompt), reward
aggregation and group normalisation, the reference model and KL, the clipped token-level loss (`_compute_loss`,
untouched: with the `grpo` rule the loss is TRL's GRPO exactly, which a test checks), checkpoints and logging.

The subclass changes four things, each because TRL cannot do it for VITAL (docs/design.md, "TRL's video gap"):
1. `_generate` runs the project's tool loop (`train.rollouts`): video prompts, clip tool turns returning videos.
2. Per-sample video tensors travel with the batch (`mtvr_media`, a list TRL shuffles and splits with the rows),
   and `_get_per_token_logps_and_entropies` forwards them (plus `mm_token_type_ids`) for the policy, old-policy
   and reference passes. TRL's version forwards image fields only.
3. After TRL's advantages, the advantage rule (`train.advantages`) rescales each group: DGRPO's w(D).
4. Metrics for TensorBoard: reward by task, tool-call rate, pass rate, mean advantage weight.

`loss` is pluggable the same way (`LOSSES`): "grpo" is TRL's `_compute_loss`; "reg_grpo" is DeepVideo-R1's
Reg-GRPO (`train.reg_grpo`), for which generation batches are split into micro-batches of whole groups. An
optional `augmenter` (`train.augment`, DeepVideo-R1's DA-Aug) rewrites hard and easy groups after the rollouts
and before the rewards, so either loss and either advantage rule can run with it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch

from model.engine_api import SamplingSettings
from mtvr_data.rewards import format_reward_fn, make_task_reward_fn, tool_bonus_fn
from train.advantages import AdvantageRule, apply_rule, make_rule, zero_variance_share
from train.augment import AugmentReport, DifficultyAugmenter
from train.config import TrainConfig
from train.data import load_rows, select_rows
from train.dynamic_sampling import FilterReport, GroupFilter, PromptStream
from train.encoding import check_template, concat_media, mm_token_type_ids
from train.lockstep import Lockstep, needs_lockstep
from train.modeling import freeze_vision, load_model, load_processor, policy_family, world_size
from train.reg_grpo import GROUP_KEY, RegGrpoSettings, regrpo_loss_for_trainer, split_by_group
from train.rollouts import PolicyRollouts, RolloutBatch, scorable_only
from train.runs import cpu_safe, train_and_save
from train.trl_hooks import check_trl_hooks

log = logging.getLogger(__name__)

MEDIA_KEY = "mtvr_media"

#: Loss functions by name: (trainer, model, inputs) -> loss. "grpo" is TRL's clipped surrogate with KL.
LOSSES: dict[str, Callable[[Any, Any, dict[str, Any]], torch.Tensor]] = {}


def register_loss(name: str) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    def add(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        LOSSES[name] = fn
        return fn

    return add


LOSSES["reg_grpo"] = regrpo_loss_for_trainer
#: Losses that normalise within a group and so need micro-batches of whole groups.
GROUPED_LOSSES = {"reg_grpo"}


def _trl_grpo_trainer() -> type:
    from trl import GRPOTrainer

    return GRPOTrainer


def reward_functions(config: TrainConfig) -> list[Callable[..., list[float | None]]]:
    """Format + tool bonus + task reward (docs/papers.md), each unscorable on machinery failures."""
    iou = {k: (float(v[0]), float(v[1])) for k, v in config.iou_scale.items()} or None
    return [scorable_only(f) for f in (format_reward_fn, tool_bonus_fn, make_task_reward_fn(iou_scale=iou))]


def make_dgrpo_trainer_class() -> type:
    """The subclass, built on first use so importing this module does not import TRL. Stops with a clear error
    when the installed TRL's overridden methods are not the ones the subclass was written against."""
    base = _trl_grpo_trainer()
    check_trl_hooks(base)

    class DGRPOTrainer(base):  # type: ignore[misc, valid-type]
        """GRPOTrainer with the project's video tool rollouts, video log-probs and a pluggable advantage rule."""

        def __init__(
            self,
            *args: Any,
            rollouts: PolicyRollouts,
            advantage_rule: AdvantageRule | None = None,
            loss: str | None = None,
            reg_grpo: RegGrpoSettings | None = None,
            augmenter: DifficultyAugmenter | None = None,
            engine_factory: Callable[[Any], Any] | None = None,
            group_filter: GroupFilter | None = None,
            lockstep: bool | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            knobs = dgrpo_args(self.args)  # the knobs below come from the DGRPOConfig unless passed here
            loss = loss if loss is not None else knobs.loss
            if loss != "grpo" and loss not in LOSSES:
                raise ValueError(f"unknown loss {loss!r}; known: {['grpo', *sorted(LOSSES)]}")
            self.rollouts = rollouts
            self.advantage_rule = advantage_rule if advantage_rule is not None else make_rule(knobs.advantage)
            self.loss_name = loss
            self.reg_grpo = reg_grpo or knobs.reg_grpo_settings()
            self.augmenter = augmenter if augmenter is not None else default_augmenter(self, knobs)
            self.engine_factory = engine_factory
            self.group_filter = group_filter if group_filter is not None else default_group_filter(self, knobs)
            #: None: on when the weights are sharded and the policy itself generates (`train.lockstep`).
            self.lockstep = lockstep if lockstep is not None else knobs.lockstep
            self.last_lockstep: Lockstep | None = None
            self.last_filter: FilterReport | None = None
            self.last_augment: AugmentReport | None = None
            self._engine: Any = None
            self._media: list[dict[str, torch.Tensor]] | None = None
            self._rows: list[dict[str, Any]] | None = None
            self._gathered_rewards: torch.Tensor | None = None

        # --- rollouts ---------------------------------------------------------------------------------------

        def _policy_engine(self) -> Any:
            """The engine that generates with the current weights (the policy module itself by default)."""
            if self.engine_factory is not None:
                return self.engine_factory(self)
            if self.use_vllm:  # TRL built the vLLM engine (`args.use_vllm`); the generate call is ours
                from train.vllm_rollouts import engine_for

                return engine_for(self)
            from model.engines.transformers_engine import TransformersEngine

            model = self.accelerator.unwrap_model(self.model)
            if self._engine is None or self._engine.hf_model is not model:
                self._engine = TransformersEngine(
                    getattr(model, "name_or_path", "policy"),
                    model=model,
                    processor=self.processing_class,
                    device=str(self.accelerator.device),
                    batch_size=max(1, self.args.per_device_train_batch_size),
                )
            # Lockstep pairs every forward itself; generate's own per-step all-reduce would pair with nothing.
            self._engine.synced_gpus = False if self._lockstep_on() else None
            return self._engine

        def _lockstep_on(self) -> bool:
            if self.lockstep is not None:
                return self.lockstep
            return self.engine_factory is None and not self.use_vllm and needs_lockstep(self.accelerator)

        @contextmanager
        def _generation_mode(self) -> Any:
            model = self.accelerator.unwrap_model(self.model)
            was_training = model.training
            model.eval()
            try:
                if self.use_vllm and self.engine_factory is None:
                    # weights pushed if the optimizer stepped, engine woken; asleep again after (train.vllm_rollouts)
                    with self._policy_engine().rollout_phase(self):
                        yield
                elif self._lockstep_on():
                    pad = self.processing_class.tokenizer.pad_token_id or 0
                    with Lockstep(model, pad, self.accelerator.device) as lockstep:
                        self.last_lockstep = lockstep
                        yield
                else:
                    yield
            finally:
                model.train(was_training)

        def _generate(self, prompts: list[Any]) -> tuple[Any, ...]:
            rows = self._rows
            if rows is None or len(rows) != len(prompts):
                raise RuntimeError("DGRPOTrainer._generate needs the batch rows; call _generate_and_score_completions")
            started = time.perf_counter()
            training = self.model.training
            with self._generation_mode():
                engine = self._policy_engine()
                batch = self.rollouts(rows, engine)
                if self.group_filter is not None and training:
                    batch, filtered = self.group_filter(rows, batch, engine, self.rollouts)
                    self._log_filter(filtered)
                if self.augmenter is not None and training:
                    batch, report = self.augmenter(rows, batch, engine, self.rollouts, step=self.state.global_step)
                    self._log_augment(report)
            self._media = batch.media
            self._log_rollouts(batch, time.perf_counter() - started)
            return (
                batch.prompt_ids,
                batch.completion_ids,
                batch.tool_mask,
                batch.completions,
                None,  # no sampling log-probs: the loss uses the trainer's own old-policy pass
                batch.extra_fields(),
                None,
                [],
            )

        def _log_rollouts(self, batch: RolloutBatch, seconds: float) -> None:
            mode = "train" if self.model.training else "eval"
            trajectories = [t for t in batch.trajectories if t is not None]
            ok = [t for t in trajectories if t.reward is not None]
            metrics = self._metrics[mode]
            metrics["rollouts/seconds"].append(seconds)
            metrics["rollouts/failed_rate"].append(1 - len(ok) / max(1, len(trajectories)))
            turns = sum(len(t.turns) for t in trajectories)
            metrics["rollouts/reencoded_turn_share"].append(sum(batch.reencoded_turns) / max(1, turns))
            metrics["tools/call_rate"].append(
                sum(t.num_tool_calls > 0 for t in trajectories) / max(1, len(trajectories))
            )
            metrics["pass_rate"].append(sum(t.passed for t in trajectories) / max(1, len(trajectories)))
            by_task: dict[str, list[float]] = defaultdict(list)
            for task, t in zip(batch.tasks, batch.trajectories, strict=True):
                if t is not None and t.reward is not None:
                    by_task[task].append(t.reward.total)
            for task, values in by_task.items():
                metrics[f"rewards_by_task/{task}"].append(sum(values) / len(values))

        def _log_filter(self, report: FilterReport) -> None:
            self.last_filter = report
            metrics = self._metrics["train"]
            metrics["dynamic_sampling/zero_variance_before"].append(report.zero_variance_before)
            metrics["dynamic_sampling/zero_variance_after"].append(report.zero_variance_after)
            metrics["dynamic_sampling/rounds"].append(report.rounds)
            metrics["dynamic_sampling/replaced_groups"].append(report.replaced)
            log.info(
                "dynamic sampling: zero-variance share %.2f -> %.2f (%d of %d groups replaced, %d rounds)",
                report.zero_variance_before, report.zero_variance_after, report.replaced, report.groups, report.rounds,
            )  # fmt: skip

        def _log_augment(self, report: AugmentReport) -> None:
            self.last_augment = report
            metrics = self._metrics["train"]
            groups = max(1, len(report.decisions))
            metrics["augment/zero_variance_before"].append(report.zero_variance_before)
            metrics["augment/hint_count"].append(report.hints)
            metrics["augment/hint_failed"].append(report.hint_failed)
            metrics["augment/perturb_count"].append(report.perturbed)
            metrics["augment/augmented_share"].append((report.hints + report.perturbed) / groups)
            if report.all_deltas:
                metrics["augment/delta_r_mean"].append(sum(report.all_deltas) / len(report.all_deltas))
            writer = self._tensorboard_writer()
            if writer is not None and report.all_deltas:
                writer.add_histogram("train/augment/delta_r", torch.tensor(report.all_deltas), self.state.global_step)

        def _tensorboard_writer(self) -> Any:
            """TensorBoard's writer when the run reports to it (main process only), for the Delta_R histogram."""
            for callback in self.callback_handler.callbacks:
                writer = getattr(callback, "tb_writer", None)
                if type(callback).__name__ == "TensorBoardCallback" and writer is not None:
                    return writer
            return None

        # --- micro-batches of whole groups (Reg-GRPO) --------------------------------------------------------

        def _prepare_inputs(self, generation_batch: Any) -> dict[str, Any]:
            """TRL's buffering of one generation batch over `steps_per_generation x num_iterations` steps, with
            whole groups per micro-batch for the losses that need them (TRL shuffles single rows)."""
            if self.loss_name not in GROUPED_LOSSES or not self.model.training:
                return super()._prepare_inputs(generation_batch)
            generate_every = self.args.steps_per_generation * self.num_iterations
            if self._step % generate_every == 0 or self._buffered_inputs is None:
                batch = self._generate_and_score_completions(generation_batch)
                self._buffered_inputs = split_by_group(batch, self.args.steps_per_generation, self.num_generations)
            return self._buffered_inputs[self._step % self.args.steps_per_generation]

        # --- advantages -------------------------------------------------------------------------------------

        def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> Any:
            rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            self._gathered_rewards = rewards_per_func
            return rewards_per_func

        def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
            self._rows = inputs
            self._media = None
            try:
                output = super()._generate_and_score_completions(inputs)
            finally:
                self._rows = None
            mode = "train" if self.model.training else "eval"
            rewards_per_func = self._gathered_rewards
            assert rewards_per_func is not None
            totals = (rewards_per_func * self.reward_weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
            totals[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
            group = self.num_generations if mode == "train" else self.num_generations_eval
            local = slice(
                self.accelerator.process_index * len(inputs), (self.accelerator.process_index + 1) * len(inputs)
            )
            output["advantages"], weights = apply_rule(self.advantage_rule, totals, output["advantages"], group, local)
            self._metrics[mode]["advantage_weight/mean"].append(weights.mean().item())
            self._metrics[mode]["advantage/zero_variance_share"].append(zero_variance_share(totals.view(-1, group)))
            output[GROUP_KEY] = torch.arange(len(inputs), device=output["advantages"].device) // group
            output[MEDIA_KEY] = self._media if self._media is not None else [{} for _ in inputs]
            self._media = None
            return output

        # --- video-aware log-probs -------------------------------------------------------------------------

        def _get_per_token_logps_and_entropies(
            self,
            model: Any,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            logits_to_keep: int,
            batch_size: int | None = None,
            compute_entropy: bool = False,
            compute_aux_loss: bool = False,
            **image_fields: Any,
        ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
            media = self._media
            if media is None or not any(media):
                return super()._get_per_token_logps_and_entropies(
                    model,
                    input_ids,
                    attention_mask,
                    logits_to_keep,
                    batch_size=batch_size,
                    compute_entropy=compute_entropy,
                    compute_aux_loss=compute_aux_loss,
                    **image_fields,
                )
            if len(media) != input_ids.size(0):
                raise RuntimeError(f"{len(media)} media entries for a batch of {input_ids.size(0)}")
            batch_size = batch_size or input_ids.size(0)
            logps, entropies = [], []
            for start in range(0, input_ids.size(0), batch_size):
                end = min(start + batch_size, input_ids.size(0))
                ids = input_ids[start:end]
                mask = attention_mask[start:end]
                inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
                inputs.update({k: v.to(ids.device) for k, v in concat_media(media[start:end]).items()})
                inputs["mm_token_type_ids"] = mm_token_type_ids(ids, self.processing_class)
                labels = ids.masked_fill(mask == 0, -100)
                labels[:, :-logits_to_keep] = -100
                with self.accelerator.autocast():
                    outputs = model(**inputs, labels=labels, fused_lm_head=True)
                logps.append(outputs.log_probs[:, -logits_to_keep:])
                if compute_entropy:
                    entropies.append(outputs.entropy[:, -logits_to_keep:])
            return (
                torch.cat(logps, dim=0),
                torch.cat(entropies, dim=0) if compute_entropy else None,
                None,
            )

        def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
            self._media = inputs.get(MEDIA_KEY)
            try:
                if self.loss_name == "grpo":
                    return super()._compute_loss(model, inputs)
                return LOSSES[self.loss_name](self, model, inputs)
            finally:
                self._media = None

    return DGRPOTrainer


def rl_dataset(config: TrainConfig) -> Any:
    """The config's MTVR-RL rows, with the `prompt` column TRL requires (used only for its logs)."""
    rows = select_rows(load_rows(config.data, "rl", config.split), tools=config.tools, sources=config.sources)
    if len(rows) == 0:
        raise ValueError(f"no RL rows in {config.data} with tools={config.tools} sources={config.sources or 'all'}")
    return rows.map(lambda row: {"prompt": [{"role": "user", "content": row["question"]}]})


def build_dgrpo_trainer(
    config: TrainConfig, *, model: Any = None, processor: Any = None, train_dataset: Any = None
) -> Any:
    """A DGRPO trainer over the config's RL rows (exposed so tests, the bench and the recipe can drive it).

    The trainer's knobs travel in its `DGRPOConfig` (`train.dgrpo_config`): VITAL's defaults, the config's `args`
    and its top-level DGRPO keys (`TrainConfig.trainer_args`); the trainer builds its advantage rule, loss, DA-Aug
    and dynamic sampling from them."""
    config.check_args()  # again: `args` may have changed since the file was read (tests and the bench edit it)
    processor = processor if processor is not None else load_processor(config.model)
    check_template(processor)
    model = model if model is not None else load_model(config.model, attn_implementation=config.attn_implementation)
    if config.freeze_vision:
        freeze_vision(model)
    args = cpu_safe(config.trainer_args())
    if config.global_batch_size is not None:
        # DGRPO's global batch counts completions: prompts per step x G.
        per_step = int(args["per_device_train_batch_size"]) * world_size()
        if config.global_batch_size % per_step:
            raise ValueError(f"global_batch_size {config.global_batch_size} is not a multiple of {per_step}")
        args["steps_per_generation"] = config.global_batch_size // per_step
        args["gradient_accumulation_steps"] = args["steps_per_generation"]
    from train.dgrpo_config import DGRPOConfig

    dgrpo_config = DGRPOConfig(**args)  # checks the knobs and the group layout (whole groups where needed)
    from train.vllm_rollouts import check_vllm_args

    check_vllm_args(dgrpo_config)  # before any engine is built: `use_vllm` needs the `vllm` extra
    roll = config.rollout
    sampling = SamplingSettings(
        temperature=dgrpo_config.temperature,
        top_p=dgrpo_config.top_p,
        max_new_tokens=roll.max_new_tokens,
        repetition_penalty=dgrpo_config.repetition_penalty,
    )
    rollouts = PolicyRollouts(
        processor,
        video_root=config.video_root,
        budget=config.frame_budget(),
        sampling=sampling,
        max_tool_calls=roll.max_tool_calls,
        max_total_tokens=roll.max_total_tokens,
        tool_timeout_s=roll.tool_timeout_s,
        preset=config.prompt,
        family=policy_family(model),
    )
    trainer_class = make_dgrpo_trainer_class()
    dataset = train_dataset if train_dataset is not None else rl_dataset(config)
    log.info(
        "DGRPO: %d rows, rule %s, loss %s, augment %s, dynamic sampling %s, G %d, inner updates %d, beta %g, lr %g",
        len(dataset), dgrpo_config.advantage, dgrpo_config.loss, "on" if dgrpo_config.augment else "off",
        "on" if dgrpo_config.dynamic_sampling else "off", dgrpo_config.num_generations, dgrpo_config.num_iterations,
        dgrpo_config.beta, dgrpo_config.learning_rate,
    )  # fmt: skip
    return trainer_class(
        model=model,
        reward_funcs=reward_functions(config),
        args=dgrpo_config,
        train_dataset=dataset,
        processing_class=processor,
        rollouts=rollouts,
    )


def dgrpo_args(args: Any) -> Any:
    """The trainer's `DGRPOConfig`. A plain GRPOConfig is refused: it has none of the knobs the trainer reads."""
    from train.dgrpo_config import DGRPOConfig

    if not isinstance(args, DGRPOConfig):
        raise TypeError(f"DGRPOTrainer needs args=DGRPOConfig(...) (train.dgrpo_config), got {type(args).__name__}")
    return args


def default_group_filter(trainer: Any, knobs: Any) -> GroupFilter | None:
    """Dynamic sampling's filter when `knobs.dynamic_sampling` is on: further prompts come from the trainer's own
    rows, in a seeded order that differs per process."""
    settings = knobs.dynamic_sampling_settings()
    if settings is None:
        return None
    stream = PromptStream(trainer.train_dataset, seed=knobs.seed + 1000 * trainer.accelerator.process_index)
    return GroupFilter(settings, stream.take)


def default_augmenter(trainer: Any, knobs: Any) -> DifficultyAugmenter | None:
    """DA-Aug when `knobs.augment` is on; its replay buffer sees every process's group means (`gather`)."""
    settings = knobs.augment_settings()
    if settings is None:
        return None
    accelerator = trainer.accelerator

    def gather(values: list[float]) -> list[float]:
        return accelerator.gather(torch.tensor(values, device=accelerator.device)).tolist()

    return DifficultyAugmenter(settings, knobs.num_generations, gather=gather)


def build_plain_grpo_trainer(config: TrainConfig, *, model: Any = None, processor: Any = None) -> Any:
    """TRL's own GRPOTrainer on the same model, rows, rewards and arguments: the baseline DGRPO is checked and
    benchmarked against (it cannot roll out videos or tools, so callers supply its generations). `model`, as in
    `build_dgrpo_trainer`, is an already loaded policy (the GPU bench's bf16 one); by default the config's."""
    from trl import GRPOConfig, GRPOTrainer

    from train.dgrpo_config import grpo_kwargs

    processor = processor if processor is not None else load_processor(config.model)
    if model is None:
        model = load_model(config.model, attn_implementation=config.attn_implementation)
    if config.freeze_vision:
        freeze_vision(model)
    return GRPOTrainer(
        model=model,
        reward_funcs=reward_functions(config),
        args=GRPOConfig(**grpo_kwargs(cpu_safe(config.trainer_args()))),
        train_dataset=rl_dataset(config),
        processing_class=processor,
    )


def run_dgrpo(config: TrainConfig) -> dict[str, Any]:
    """Train (resuming from the run's last checkpoint, if any) and save a `from_pretrained` folder."""
    return train_and_save(config, build_dgrpo_trainer)
