"""The board's UI text in English and Chinese (CMMLU and C-Eval users are largely Chinese-speaking teams).

Templates call ``t("English text")``; the English text is the key, so a page reads as English wherever a
translation is missing, and tests/test_board_i18n.py fails when a template's text has none. Model names,
task names, prompts and answers are data and are never translated.
"""

from __future__ import annotations

LANGUAGES = {"en": "English", "zh": "中文"}
COOKIE = "evalkit_lang"

ZH = {
    # navigation and page titles
    "runs": "运行记录", "jobs": "任务", "leaderboard": "排行榜", "arena": "盲评", "rankings": "排名",
    "compare": "对比", "nightly": "夜间回归", "chat": "对话", "job {id}": "任务 {id}", "blind arena": "盲评竞技场",
    "rankings: {task}": "排名：{task}", "log in": "登录", "revealed": "揭晓", "compare runs": "对比两次运行",
    "nightly history": "夜间回归历史", "playground": "对话试用",
    # jobs page
    "Launch an evaluation": "发起评测", "model": "模型", "tasks": "任务集", "few-shot": "少样本数", "limit": "数量上限",
    "backend": "后端", "run": "运行", "Runs as:": "等价命令：", "Train": "训练", "recipe": "配方",
    "overrides": "覆盖参数", "train": "训练", "Nightly suite": "夜间回归套件", "suite": "套件",
    "run the suite": "运行套件", "Jobs": "任务列表", "id": "编号", "state": "状态", "exit": "退出码",
    "command": "命令", "user": "用户",
    # job page
    "cancel": "取消", "loss curves": "损失曲线", "log scale": "对数坐标", "log": "日志",
    # runs page
    "filter": "筛选", "task": "任务", "created (UTC)": "创建时间 (UTC)", "kind": "类型", "score": "分数",
    "peak RSS MB": "峰值内存 MB", "no runs in {store} yet: launch one from": "{store} 中还没有运行记录：请从此处发起",
    "compare two runs": "对比两次运行",
    # arena, reveal, rankings
    "base run": "基准运行", "other run": "对比运行", "start": "开始",
    "You have judged every sample these two runs share.": "这两次运行共有的样本你都已评完。",
    "{n} sample(s) left for you. Keys:": "还剩 {n} 个样本。快捷键：", "left": "左", "right": "右", "tie": "平局",
    "both bad": "都不好", "Prompt": "提示", "Left": "左侧", "Right": "右侧", "left is better": "左侧更好",
    "right is better": "右侧更好", "next prompt": "下一个", "Left was": "左侧是", "right was": "右侧是",
    "you said": "你的判断", "No votes on {task} yet: judge pairs in the": "{task} 还没有投票：请在此评判",
    "tier": "档位", "rating": "评分", "95% interval": "95% 区间", "votes": "票数",
    "Win probability (row beats column)": "胜率（行胜列）", "token": "令牌",
    "An operator creates tokens with": "管理员用此命令创建令牌：",
    "{votes} vote(s) on {prompts} prompt(s); Bradley-Terry by maximum likelihood (ties half a win), anchored at "
    "{anchor}; 95% intervals from {rounds} bootstrap resamples of prompts (seed {seed}).":
        "{prompts} 个提示共 {votes} 票；Bradley-Terry 最大似然估计（平局计半胜），以 {anchor} 为基准；"
        "95% 区间来自按提示重采样的 {rounds} 次 bootstrap（种子 {seed}）。",
    "{model} against {anchor}: {wins} wins, {losses} losses, {ties} ties; win rate {rate}% (Wilson 95% {low}..{high}), "
    "exact sign test p = {p}.":
        "{model} 对 {anchor}：胜 {wins}，负 {losses}，平 {ties}；胜率 {rate}%（Wilson 95% {low}..{high}），精确符号检验 p = {p}。",
    "Position bias: the left answer won {rate} of decided votes (50% is none).":
        "位置偏差：在分出胜负的投票中，左侧答案胜出 {rate}（50% 表示无偏差）。",
    "Humans agreed with ROUGE-L's preference on {agree} of {compared} decided pairs ({rate}%).":
        "在 {compared} 个分出胜负的配对中，人工判断与 ROUGE-L 的偏好一致 {agree} 次（{rate}%）。",
    # compare page
    "base": "基准", "candidate": "候选", "delta": "差值", "verdict": "结论", "flipped right to wrong": "由对变错",
    "flipped wrong to right": "由错变对", "question": "题目", "answer": "答案", "reference": "参考答案",
    "prediction": "预测", "no questions flipped": "没有翻转的题目", "the report": "完整报告",
    # playground
    "max new tokens": "最大生成长度", "(optional: side by side)": "（可选：并排对比）", "send": "发送",
    # nightly page
    "night": "日期", "no nightly runs in the store yet": "存储中还没有夜间回归记录", "what flipped": "翻转的题目",
}


def pick_language(query: str | None, cookie: str | None, accept: str | None) -> str:
    """``?lang=`` first, then the cookie the language switch set, then the browser's Accept-Language."""
    for choice in (query, cookie):
        if choice in LANGUAGES:
            return choice
    return "zh" if (accept or "").lower().startswith("zh") else "en"


def translator(language: str):
    def t(text: str, **values) -> str:
        shown = ZH.get(text, text) if language == "zh" else text
        return shown.format(**values) if values else shown
    return t
