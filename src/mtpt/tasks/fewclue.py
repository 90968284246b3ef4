"""Chinese suite (part 2): tasks evaluated on FewCLUE's labelled ``test_public.json``.

FewCLUE (Xu et al. 2021) publishes five k-shot samples per task (``train_<i>`` / ``dev_<i>``,
seeds 0-4) and their de-duplicated unions (``*_few_all``). Full-data protocol here: train =
``train_few_all``, validation = ``dev_few_all``, test = ``test_public`` unless stated otherwise.

Leakage warnings (PROVENANCE.md): OCNLI ``test_public`` is a subset of the official dev set, so
neither the official dev nor the CURC OCNLI files are read; CLUEWSC ``test_public`` is built from
CLUEWSC2020 *train* passages, so the CURC CLUEWSC train set is never read. Note that FewCLUE's
own cluewsc train samples share passages (not pronoun/candidate pairs) with ``test_public``:
that is how FewCLUE was published.
"""

from __future__ import annotations

from pathlib import Path

from .base import KShotInfo, TaskDataError
from .chinese import BINARY, MATCH, NLI_ZH, NLI_ZH_LABELS, SENTIMENT_ZH
from .common import FEWCLUE_SEEDS, classify, load, task
from .kshot import holdout
from .readers import Row, read_json, read_jsonl
from .templates import Prompt, index_map, lookup

TNEWS_CODES = ("100", "101", "102", "103", "104", "106", "107", "108", "109", "110", "112", "113",
               "114", "115", "116")
TNEWS_WORDS = ("故事", "文化", "娱乐", "体育", "财经", "房产", "汽车", "教育", "科技", "军事",
               "旅游", "国际", "股票", "农业", "电竞")
#: CURC's Chinese TNEWS label words -> FewCLUE codes (家居 = news_house, 世界 = news_world, ...)
TNEWS_CURC = {"故事": "100", "文化": "101", "娱乐": "102", "体育": "103", "财经": "104",
              "家居": "106", "汽车": "107", "教育": "108", "科技": "109", "军事": "110",
              "旅行": "112", "世界": "113", "股票": "114", "农业": "115", "游戏": "116"}
IFLYTEK_WORDS = (
    "打车", "地图导航", "免费WIFI", "租车", "同城服务", "快递物流", "婚庆", "家政", "公共交通",
    "政务", "社区服务", "薅羊毛", "魔幻", "仙侠", "卡牌", "飞行空战", "射击游戏", "休闲益智",
    "动作类", "体育竞技", "棋牌中心", "经营养成", "策略", "MOBA", "辅助工具", "约会社交",
    "即时通讯", "工作社交", "论坛圈子", "婚恋社交", "情侣社交", "社交工具", "生活社交", "微博博客",
    "新闻", "漫画", "小说", "技术", "教辅", "问答交流", "搞笑", "杂志", "百科", "影视娱乐", "求职",
    "兼职", "视频", "短视频", "音乐", "直播", "电台", "K歌", "成人", "中小学", "职考", "公务员",
    "英语", "视频教育", "高等教育", "成人教育", "艺术", "语言(非英语)", "旅游资讯", "综合预定",
    "民航", "铁路", "酒店", "行程管理", "民宿短租", "出国", "工具", "亲子儿童", "母婴", "驾校",
    "违章", "汽车咨询", "汽车交易", "日常养车", "行车辅助", "租房", "买房", "装修家居", "电子产品",
    "问诊挂号", "养生保健", "医疗服务", "减肥瘦身", "美妆美业", "菜谱", "餐饮店", "体育咨讯",
    "运动健身", "支付", "保险", "股票", "借贷", "理财", "彩票", "记账", "银行", "美颜", "影像剪辑",
    "摄影修图", "相机", "绘画", "二手", "电商", "团购", "外卖", "电影票务", "社区超市", "购物咨询",
    "笔记", "办公", "日程管理", "女性", "经营", "收款", "其他")
CSLDCP_WORDS = (
    "材料科学与工程", "作物学", "口腔医学", "药学", "教育学", "水利工程", "理论经济学",
    "食品科学与工程", "畜牧学/兽医学", "体育学", "核科学与技术", "力学", "园艺学", "水产", "法学",
    "地质学/地质资源与地质工程", "石油与天然气工程", "农林经济管理", "信息与通信工程",
    "图书馆、情报与档案管理", "政治学", "电气工程", "海洋科学", "民族学", "航空宇航科学与技术",
    "化学/化学工程与技术", "哲学", "公共卫生与预防医学", "艺术学", "农业工程", "船舶与海洋工程",
    "计算机科学与技术", "冶金工程", "交通运输工程", "动力工程及工程热物理", "纺织科学与工程",
    "建筑学", "环境科学与工程", "公共管理", "数学", "物理学", "林学/林业工程", "心理学", "历史学",
    "工商管理", "应用经济学", "中医学/中药学", "天文学", "机械工程", "土木工程", "光学工程",
    "地理学", "农业资源利用", "生物学/生物科学与工程", "兵器科学与技术", "矿业工程", "大气科学",
    "基础医学/临床医学", "电子科学与技术", "测绘科学与技术", "控制科学与工程", "军事学",
    "中国语言文学", "新闻传播学", "社会学", "地球物理学", "植物保护")

TNEWS = Prompt("新闻标题：{title}\n这条新闻属于哪个类别？答案：", TNEWS_WORDS)
IFLYTEK = Prompt("应用描述：{text}\n这个应用属于哪个类别？答案：", IFLYTEK_WORDS)
CSLDCP = Prompt("论文摘要：{text}\n这篇论文属于哪个学科？答案：", CSLDCP_WORDS)
CSL = Prompt("摘要：{abstract}\n关键词：{keywords}\n这些关键词都是这篇论文的关键词吗？答案：",
             ("否", "是"))
CLUEWSC = Prompt("{text}\n问题：句中的“*{pronoun}*”指的是“{candidate}”吗？答案：", ("否", "是"))
CHID = Prompt("{text}\n问题：横线处应填哪个成语？答案：")


def _total(k: int) -> KShotInfo:
    return KShotInfo("total", k, FEWCLUE_SEEDS, "FewCLUE")


def _files(name: str, conv):
    """FewCLUE published k-shot loader and the standard full-data builder."""

    def published(root: Path, seed: int, split: str):
        prefix = "train" if split == "train" else "dev"
        return load(read_jsonl(root / "fewclue" / name / f"{prefix}_{seed}.json"), conv)

    def build(root: Path):
        d = root / "fewclue" / name
        return {"train": load(read_jsonl(d / "train_few_all.json"), conv),
                "validation": load(read_jsonl(d / "dev_few_all.json"), conv),
                "test": load(read_jsonl(d / "test_public.json"), conv)}

    return published, build


_STANDARD = """\
train / validation / test: fewclue/{name}/train_few_all.json / dev_few_all.json /
  test_public.json (union of the five k-shot train / dev samples; labelled public test)."""


def _fewclue_task(name, family, prompt, conv, kshot, desc, size_class="small",
                  kind="classification"):
    published, build = _files(name, conv)
    task(name, family, "zh", kind, ("accuracy",), prompt, size_class,
         f"{desc}\n{_STANDARD.format(name=name)}\nk-shot: {kshot.describe()}: "
         f"train_<seed>.json / dev_<seed>.json.",
         build, kshot=kshot, published=published)


# -- simple FewCLUE classification tasks ---------------------------------------------------------
_fewclue_task("eprstmt", "fewclue", SENTIMENT_ZH,
              classify("eprstmt", SENTIMENT_ZH, {"text": "sentence"}, "label",
                       index_map("Negative", "Positive")),
              _total(32), "EPRSTMT e-commerce review sentiment (Negative / Positive).")
_fewclue_task("bustm", "fewclue", MATCH,
              classify("bustm", MATCH, {"sentence1": "sentence1", "sentence2": "sentence2"},
                       "label", BINARY),
              _total(32), "BUSTM dialogue short-text matching (1 = same intent).")
_fewclue_task("iflytek", "clue", IFLYTEK,
              classify("iflytek", IFLYTEK, {"text": "sentence"}, "label",
                       index_map(*[str(i) for i in range(len(IFLYTEK_WORDS))])),
              _total(928), "IFLYTEK app-description classification, 119 classes (label_des "
              "names as label words;\nFewCLUE k-shot: 928 train / 690 dev in total per seed).",
              size_class="large")
_fewclue_task("csldcp", "fewclue", CSLDCP,
              classify("csldcp", CSLDCP, {"text": "content"}, "label", index_map(*CSLDCP_WORDS)),
              _total(536), "CSLDCP paper-discipline classification, 67 classes (multi-token "
              "label words).")


def _csl_one(row: Row):
    keywords = row["keyword"]
    if not isinstance(keywords, list):
        raise TaskDataError(f"{row.where}: 'keyword' should be a list of strings")
    fields = {"abstract": row.text("abst"), "keywords": "，".join(keywords)}
    return CSL.classify("csl", fields, lookup(BINARY, row["label"], row.where), row.where)


_fewclue_task("csl", "clue", CSL, _csl_one, _total(32),
              "CSL keyword recognition: are all keywords real keywords of the abstract? "
              "(1 = yes).", size_class="large")


def mark_chars(text: str, index: int | None, span: str) -> str:
    """Wrap ``text[index:index+len(span)]`` in asterisks when it equals ``span`` (so a pronoun
    that occurs twice is unambiguous); otherwise return ``text`` unchanged."""
    if isinstance(index, int) and span and text[index:index + len(span)] == span:
        return f"{text[:index]}*{span}*{text[index + len(span):]}"
    return text


def _cluewsc_one(row: Row):
    target = row["target"]
    pronoun = target.get("span2_text", "")
    fields = {"text": mark_chars(row.text("text"), target.get("span2_index"), pronoun),
              "pronoun": pronoun, "candidate": target.get("span1_text", "")}
    label = lookup(index_map("false", "true"), row["label"], row.where)
    return CLUEWSC.classify("cluewsc", fields, label, row.where)


_fewclue_task("cluewsc", "clue", CLUEWSC, _cluewsc_one, _total(32), """\
CLUEWSC2020 pronoun resolution (true / false); the pronoun is marked *like this* at its
  span2_index. The CURC CLUEWSC train set is NEVER used: the FewCLUE test_public is built from
  CLUEWSC2020 train passages (PROVENANCE.md). FewCLUE's own train/dev samples share passages
  (not pronoun-candidate pairs) with test_public: that is how FewCLUE was published.""")


def _chid_one(row: Row):
    content = row.text("content")
    if content.count("#idiom#") != 1:
        raise TaskDataError(f"{row.where}: expected exactly one #idiom# blank in 'content'")
    label = row["answer"]
    if not isinstance(label, int):
        raise TaskDataError(f"{row.where}: 'answer' should be an integer index")
    return CHID.choose("chid", {"text": content.replace("#idiom#", "____")},
                       row["candidates"], label, row.where)


_fewclue_task("chid", "fewclue", CHID, _chid_one, _total(42),
              "ChID idiom cloze: 7 candidate idioms per blank (choices), #idiom# shown as ____.",
              size_class="large", kind="multiple_choice")


# -- OCNLI: official train as the full-data train set --------------------------------------------
_ocnli_conv = classify("ocnli", NLI_ZH, {"premise": "sentence1", "hypothesis": "sentence2"},
                       "label", NLI_ZH_LABELS)


def _ocnli_build(root: Path):
    rows = read_jsonl(root / "clue/ocnli/official/train.10k.json")
    train, val = holdout(load((r for r in rows if r["label"] != "-"), _ocnli_conv))
    return {"train": train, "validation": val,
            "test": load(read_jsonl(root / "fewclue/ocnli/test_public.json"), _ocnli_conv)}


task("ocnli", "clue", "zh", "classification", ("accuracy",), NLI_ZH, "large", """\
OCNLI (original Chinese NLI; 是 / 可能 / 否 for entailment / neutral / contradiction).
train: clue/ocnli/official/train.10k.json (10k of the 50k train; train.3k is a subset) without
  the 15 items whose label is "-" (no gold consensus), minus 1,000 held out as validation.
test: fewclue/ocnli/test_public.json (2,520). It is a subset of the official dev set, so the
  official dev and the CURC OCNLI halves are never read.
k-shot: FewCLUE 32 total x5 seeds (fewclue/ocnli/train_<seed>.json / dev_<seed>.json).""",
     _ocnli_build, kshot=_total(32), published=_files("ocnli", _ocnli_conv)[0])

# -- TNEWS: FewCLUE files plus the CURC halves of the official dev set ---------------------------
_TNEWS_IDS = index_map(*TNEWS_CODES)


def _tnews_fewclue(row: Row):
    title = row.text("sentence")
    keywords = row.text("keywords")
    text = f"{title} {keywords}" if keywords else title  # the CURC layout: "title kw1,kw2"
    return TNEWS.classify("tnews", {"title": text}, lookup(_TNEWS_IDS, row["label"], row.where),
                          row.where)


def _tnews_curc(row: Row):
    code = TNEWS_CURC.get(row.text("label"))
    if code is None:
        raise TaskDataError(f"{row.where}: label {row['label']!r} is not one of "
                            f"{sorted(TNEWS_CURC)}")
    return TNEWS.classify("tnews", {"title": row.text("text_a")}, _TNEWS_IDS[code], row.where)


def _tnews_build(root: Path):
    few = root / "fewclue/tnews"
    test_rows = read_jsonl(few / "test_public.json")
    titles = {r.text("sentence") for r in test_rows}
    dev = load(read_jsonl(few / "dev_few_all.json"), _tnews_fewclue)
    dev_texts = {e.text for e in dev}
    curc = [e for f in ("dev", "test")
            for e in load(read_json(root / f"clue/tnews/curc/{f}.json"), _tnews_curc)]
    # CURC text = "title keywords": drop items whose title is a test title (6 such items)
    curc = [e for e in curc if e.text not in dev_texts and not _title_in(e.text, titles)]
    train = load(read_jsonl(few / "train_few_all.json"), _tnews_fewclue) + curc
    return {"train": train, "validation": dev, "test": load(test_rows, _tnews_fewclue)}


def _title_in(text: str, titles: set[str]) -> bool:
    body = text.split("\n", 1)[0].removeprefix("新闻标题：")
    return body in titles or body.rsplit(" ", 1)[0] in titles


task("tnews", "clue", "zh", "classification", ("accuracy",), TNEWS, "large", """\
TNEWS news-title classification, 15 classes (Chinese names from label_index2en2zh.json). Input
  = title + " " + keywords (CURC's layout).
train: fewclue/tnews/train_few_all.json (1,185) + clue/tnews/curc/{dev,test}.json (CURC halves of
  the official dev set) minus the items also in dev_few_all and the items whose title is a
  test_public title.
validation: fewclue/tnews/dev_few_all.json (1,098). test: fewclue/tnews/test_public.json (2,010).
k-shot: FewCLUE 16/class x5 seeds (240 per split).""",
     _tnews_build, kshot=KShotInfo("per_class", 16, FEWCLUE_SEEDS, "FewCLUE"),
     published=_files("tnews", _tnews_fewclue)[0])
