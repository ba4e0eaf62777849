"""The built-in detector's rules: phrase families, chat-template tokens, exfiltration links.

Every rule is matched against folded text (see `normalize`): lower case, no
accents, look-alike letters folded, `_` read as a space, the strings of a
result joined by NUL (which no separator crosses). Each rule has a kind and
a weight: its score on its own; a string's score is the noisy-or of its
distinct rules, so weak cues need company to pass the threshold.

The rules are RE2 syntax, matched by RE2 (`google-re2`): linear time in the
length of the text whatever the input, by construction, with no
backtracking to exploit. All of them run at once as one `re2.Set` (one
pass over the text); only the rules that match are run again for their
spans.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ztgate.guards.injection.normalize import fold_phrase

# Word characters: letters and digits of any script (everything not ASCII
# punctuation, space or control counts as a letter). NUL joins the strings
# of a result: no separator or gap crosses it.
WORD = r"[^\x00-/:-@\[-`{-\x7f]"
NONWORD = r"[\x01-/:-@\[-`{-\x7f]"
SEP = NONWORD + "{1,8}"
# Where a word starts or ends (RE2's \b knows ASCII only): the match may
# include the character before the word; the detector skips it.
B = r"(?:^|[\x00-/:-@\[-`{-\x7f])"
E = r"(?:$|[\x00-/:-@\[-`{-\x7f])"


def gap(words: int) -> str:
    """Up to `words` whole words between two phrases."""
    return f"(?:{SEP}{WORD}+){{0,{words}}}?{SEP}"


@dataclass(frozen=True, slots=True)
class Rule:
    """One pattern of the detector: RE2 syntax, matched against folded text.

    `unless` (Python `re`, anchored at the match's end) vetoes a match;
    `link` marks the exfiltration rules, whose score depends on the URL in
    their first group ("image" or "link").
    """

    kind: str
    rule: str  # a stable name, e.g. "override.de": safe to log, never attacker text
    weight: float
    pattern: str
    unless: str | None = None
    link: str | None = None


def _alt(words: Sequence[str]) -> str:
    folded = sorted({fold_phrase(w) for w in words}, key=len, reverse=True)
    return "(?:" + "|".join(re.escape(w).replace(r"\ ", SEP) for w in folded) + ")"


# -- "ignore previous instructions" and its family, per language ------------------------
# verbs (stems), adjectives meaning previous / above (stems), nouns (stems).
_OVERRIDE: dict[str, tuple[list[str], list[str], list[str]]] = {
    "en": (
        [
            "ignor",
            "disregard",
            "forget",
            "overrid",
            "bypass",
            "discard",
            "neglect",
            "abandon",
            "do not follow",
            "don't follow",
            "dont follow",
            "stop following",
            "set aside",
            "pay no attention to",
            "skip",
            "drop",
            "cancel",
            "delete",
        ],
        [
            "previous",
            "prior",
            "preceding",
            "above",
            "earlier",
            "former",
            "original",
            "initial",
            "foregoing",
            "system",
        ],
        [
            "instruction",
            "prompt",
            "direction",
            "command",
            "rule",
            "guideline",
            "directive",
            "constraint",
            "guidance",
            "programming",
            "context",
            "task",
        ],
    ),
    "de": (
        [
            "ignorier",
            "vergiss",
            "vergessen sie",
            "missacht",
            "verwirf",
            "uberges",
            "befolge nicht",
            "befolgen sie nicht",
            "setze",
            "hebe",
        ],
        [
            "vorherig",
            "vorig",
            "bisherig",
            "obig",
            "fruher",
            "vorangegangen",
            "vorstehend",
            "alle",
            "ursprunglich",
            "alten",
        ],
        [
            "anweisung",
            "instruktion",
            "befehl",
            "anordnung",
            "regel",
            "vorgabe",
            "aufgabe",
            "prompt",
            "richtlinie",
        ],
    ),
    "fr": (
        [
            "ignor",
            "oubli",
            "ne tiens pas compte",
            "ne tenez pas compte",
            "fais abstraction",
            "faites abstraction",
            "neglig",
            "ne suis pas",
            "ne suivez pas",
            "annul",
        ],
        [
            "precedent",
            "anterieur",
            "ci dessus",
            "ci-dessus",
            "d'avant",
            "initial",
            "toutes",
            "tous",
            "originel",
            "prealabl",
        ],
        [
            "instruction",
            "consigne",
            "directive",
            "regle",
            "ordre",
            "indication",
            "commande",
            "prompt",
            "tache",
        ],
    ),
    "es": (
        [
            "ignor",
            "olvid",
            "descart",
            "omit",
            "haz caso omiso",
            "hagan caso omiso",
            "no sigas",
            "no siga",
            "no hagas caso",
            "pasa por alto",
            "anul",
        ],
        [
            "anterior",
            "previ",
            "precedent",
            "de arriba",
            "arriba",
            "todas",
            "todos",
            "original",
            "inicial",
        ],
        [
            "instruccion",
            "indicacion",
            "orden",
            "regla",
            "directriz",
            "directric",
            "comando",
            "consigna",
            "prompt",
            "tarea",
        ],
    ),
    "it": (
        [
            "ignor",
            "dimentic",
            "trascur",
            "non seguire",
            "non considerare",
            "lascia perdere",
            "annull",
            "scarta",
        ],
        ["precedent", "sopra", "anterior", "tutte", "tutti", "originali", "iniziali"],
        ["istruzion", "indicazion", "regol", "direttiv", "comand", "ordin", "prompt", "compit"],
    ),
    "pt": (
        [
            "ignor",
            "esquec",
            "desconsider",
            "descart",
            "nao siga",
            "nao sigas",
            "deixe de lado",
            "anul",
        ],
        ["anterior", "previ", "acima", "precedent", "todas", "todos", "original", "inicia"],
        [
            "instruc",
            "orientac",
            "regra",
            "diretriz",
            "diretiv",
            "comando",
            "ordem",
            "ordens",
            "prompt",
            "tarefa",
        ],
    ),
    "nl": (
        ["negeer", "negeren", "vergeet", "sla over", "houd geen rekening", "volg niet", "gooi weg"],
        [
            "vorig",
            "voorgaand",
            "eerder",
            "bovenstaand",
            "hierboven",
            "oude",
            "alle",
            "oorspronkelijk",
        ],
        ["instructie", "aanwijzing", "opdracht", "regel", "bevel", "richtlijn", "prompt", "taak"],
    ),
    "ru": (
        [
            "игнорир",
            "проигнорир",
            "забуд",
            "не обращай внимания на",
            "не обращайте внимания на",
            "пропуст",
            "не следуй",
            "не следуйте",
            "отбрось",
            "отбросьте",
            "отмени",
        ],
        [
            "предыдущ",
            "прежн",
            "вышеуказанн",
            "выше",
            "ранее",
            "предшествующ",
            "все",
            "всё",
            "старые",
            "исходн",
        ],
        ["инструкц", "указани", "команд", "правил", "директив", "промпт", "задани", "установк"],
    ),
    "pl": (
        ["zignoruj", "ignoruj", "zapomnij", "pomin", "nie stosuj sie do"],
        ["poprzedni", "wczesniejsz", "powyzsz", "wszystkie", "dotychczasow"],
        ["instrukcj", "polecen", "zasad", "regul", "rozkaz", "prompt"],
    ),
    "tr": (
        ["yok say", "gormezden gel", "unut", "dikkate alma"],
        ["onceki", "yukaridaki", "tum", "butun"],
        ["talimat", "komut", "kural", "yonerge"],
    ),
}
# Scripts written without spaces: verb near noun, in either order.
_OVERRIDE_CJK: dict[str, tuple[list[str], list[str]]] = {
    "zh": (
        [
            "忽略",
            "无视",
            "忽视",
            "不要理会",
            "不理会",
            "忘记",
            "忘掉",
            "不要遵守",
            "不要遵循",
            "放弃",
            "無視",
            "忽視",
            "忘記",
            "不要理會",
            "别管",
            "別管",
        ],
        [
            "指令",
            "指示",
            "说明",
            "說明",
            "命令",
            "规则",
            "規則",
            "提示词",
            "提示詞",
            "要求",
            "设定",
            "設定",
        ],
    ),
    "ja": (
        ["無視", "忘れ", "従わな", "破棄", "捨て"],
        ["指示", "命令", "指令", "ルール", "プロンプト", "設定", "制約", "規則"],
    ),
    "ko": (
        ["무시", "잊어", "따르지 마"],
        ["지시", "명령", "지침", "규칙", "프롬프트"],
    ),
}


def _override_rules() -> list[Rule]:
    rules = []
    for lang, (verbs, adjectives, nouns) in _OVERRIDE.items():
        v, a, n = _alt(verbs), _alt(adjectives), _alt(nouns)
        body = f"{B}{v}{WORD}*{gap(3)}(?:{a}{WORD}*{gap(2)}{n}|{n}{WORD}*{gap(2)}{a})"
        rules.append(Rule("override", f"override.{lang}", 0.9, body))
    for lang, (verbs, nouns) in _OVERRIDE_CJK.items():
        v, n = _alt(verbs), _alt(nouns)
        body = f"{v}[^\\x00]{{0,12}}?{n}|{n}[^\\x00]{{0,10}}?{v}"
        rules.append(Rule("override", f"override.{lang}", 0.9, body))
    return rules


_AI = (
    r"(?:ai|a\.i\.|ai assistant|assistant|ai agent|language model|large language model|llm|"
    r"chatbot|chat ?gpt|gpt[a-z0-9-]{0,12}|claude[a-z0-9-]{0,12}|gemini[a-z0-9-]{0,12}|llama|"
    r"copilot|the model|ai model|artificial intelligence)"
)
_S = SEP
_GREETING = "(?:dear|hey|hello|hi|attention|note to|message (?:to|for)|instructions? for|to you,?)"
_SECRETLY = (
    "(?:tell|inform|mention|reveal|notify|alert|disclose|let|ask)"
    f"{WORD}*(?:{_S}(?:this|it|anything)(?:{_S}to)?)?{_S}(?:the{_S})?(?:user|human|owner|principal)"
)
# Not an attack: "ignore the previous email" corrects a mistake.
_CORRECTION = (
    r"[ \t]{0,3}(?:e-?mail|message|mail|one|version|note|post|comment|link|attachment|file|invoice|"
    r"draft|meeting|reminder|request|reply|response|letter|text|order|bill|payment|statement|"
    r"transaction|entry|step)s?\b"
)

_RULES_PLAIN = [
    # -- more of the override family
    Rule("override", "override.forget_all", 0.45,
         f"{B}(?:ignor|disregard|forget){WORD}*{_S}(?:everything|all|anything)(?:{gap(3)})?"
         f"(?:above|before|previously|so far|until now|up to now|you (?:were|have been) told){E}"),
    Rule("override", "override.ignore_above", 0.7,
         f"{B}(?:ignor|disregard){WORD}*{_S}(?:(?:all{_S})?(?:the|your|my){_S}|all{_S})?"
         f"(?:above|foregoing|preceding|previous|prior|earlier){E}",
         unless=_CORRECTION),
    Rule("override", "override.all_instructions", 0.8,
         f"{B}(?:ignor|disregard|forget){WORD}*{_S}(?:all|any){_S}(?:(?:of{_S})?(?:the|your|my|"
         f"these|those){_S})?(?:instructions|prompts|rules|guidelines|directions|commands|"
         f"directives){E}"),
    # -- chat templates and role markers
    Rule("role_token", "role.special_token", 0.9,
         r"<\|\s?(?:im (?:start|end|sep)|system|user|assistant|endoftext|begin of text|end of text|"
         r"start header id|end header id|eot id|eom id|python tag|start|end|message|channel|return|"
         r"constrain|call|tool call|tool response|fim (?:prefix|middle|suffix))\s?\|>"),
    Rule("role_token", "role.inst", 0.9, r"\[/?inst\]|<</?sys>>|<(?:start|end) of turn>"),
    Rule("role_token", "role.header_system", 0.7,
         r"#{2,}[ \t]{0,4}\(?[ \t]{0,2}(?:system|assistant)" + E),
    Rule("role_token", "role.header_other", 0.3,
         r"#{2,}[ \t]{0,4}\(?[ \t]{0,2}(?:instruction|human|response|user)" + E),
    Rule("role_token", "role.xml", 0.4,
         r"</?(?:system|assistant|system prompt|im start|admin|instructions)>"),
    Rule("role_token", "role.line", 0.3, r"(?m)^[ \t]{0,8}(?:system|assistant|human)[ \t]{0,2}:"),
    # -- text addressed to an assistant
    Rule("assistant_address", "address.direct", 0.6,
         f"{B}{_GREETING}{_S}(?:the{_S}|an?{_S}|my{_S})?{_AI}{E}"),
    Rule("assistant_address", "address.if_you_are", 0.8,
         f"{B}if{_S}you(?:{_S}are|'re|{_S}re){_S}(?:an?{_S})?(?:ai|llm|language model|assistant|"
         f"bot|agent|automated|autonomous|machine)"),
    Rule("assistant_address", "address.readers", 0.8,
         f"{B}(?:ai|llm)s?{_S}(?:assistants?|agents?|models?|systems?){_S}(?:reading|processing|"
         f"parsing|summari[sz]ing|seeing|that read)"),
    Rule("assistant_address", "address.you_are", 0.4,
         f"{B}you(?:{_S}are|'re){_S}(?:now{_S})?(?:an?{_S})?(?:ai|helpful assistant|assistant|"
         f"language model|chatbot|llm|dan|unrestricted|jailbroken|in developer mode){E}"),
    Rule("assistant_address", "address.multilingual", 0.6,
         B + r"(?:(?:an|liebe|lieber|hallo|hey) (?:die |den )?(?:ki|ki-assistent|sprachmodell)|"
         r"wenn du (?:eine ki|ein sprachmodell|ein assistent)|"
         r"(?:a l'|cher |chere |attention )(?:ia|assistant ia|intelligence artificielle)|"
         r"si (?:tu es|vous etes) (?:une ia|un assistant|un modele)|"
         r"(?:a la |querida |querido |atencion )(?:ia|inteligencia artificial|asistente)|"
         r"si eres (?:una ia|un asistente|un modelo))" + E),
    # -- hijacking the task
    Rule("task_hijack", "hijack.before_you", 0.35,
         f"{B}before{_S}(?:you{_S})?(?:can{_S}|could{_S}|start{_S}|begin{_S})?(?:to{_S})?"
         f"(?:solve|complete|do|continue|finish|answer|respond|reply|proceed|summari[sz]e|start|"
         f"work on|perform|carry on){WORD}*{gap(3)}(?:task|request|question|job|work|anything)"),
    Rule("task_hijack", "hijack.task_i_gave", 0.45,
         f"{B}(?:task|instructions?|request){_S}(?:that{_S})?(?:i|the user){_S}(?:gave|assigned|"
         f"asked|sent)(?:{_S}to)?{_S}you{E}"),
    Rule("task_hijack", "hijack.new_task", 0.45,
         f"{B}(?:your|the){_S}(?:new|updated|real|actual|true|only){_S}(?:task|instructions?|goal|"
         f"objective|mission|directive|orders|purpose){E}|{B}new{_S}(?:instructions?|directives?|"
         f"orders|rules)[ \\t]?:"),
    Rule("task_hijack", "hijack.from_now_on", 0.4, f"{B}from{_S}now{_S}on,?{_S}(?:you|your){E}"),
    Rule("task_hijack", "hijack.you_must", 0.3,
         f"{B}you{_S}(?:must|should|need{_S}to|have{_S}to|are{_S}required{_S}to|will){_S}"
         f"(?:now{_S}|immediately{_S}|first{_S}|also{_S}|instead{_S})?(?:ignore|forget|"
         f"disregard|stop|send|forward|email|transfer|delete|reply|respond|say|output|print|"
         f"include|call|invoke|use the|visit|open|execute|run){E}"),
    Rule("task_hijack", "hijack.do_the_following", 0.3,
         f"{B}please{_S}(?:do|perform|execute|complete){_S}the{_S}following"),
    Rule("task_hijack", "hijack.ignore_user", 0.6,
         f"{B}(?:ignor|disregard){WORD}*{_S}(?:the{_S})?(?:user|human|principal){E}"),
    Rule("task_hijack", "hijack.new_instructions_multilingual", 0.45,
         B + "(?:neue anweisung|nouvelles? (?:instruction|consigne)|nuevas? instruccion|"
         "nuove istruzion|novas? instruc|nieuwe instructie|"
         + fold_phrase("новые инструкц") + ")|新的指令|新指令|新的指示|新しい指示"),
    # -- acting behind the user's back
    Rule("stealth", "stealth.en", 0.7,
         f"{B}(?:do{_S}not|don't|dont|never|without){_S}{_SECRETLY}{E}"
         f"|{B}(?:the{_S})?(?:user|human){_S}(?:must{_S}not|should{_S}not|shouldn't|mustn't|"
         f"must never|should never){_S}(?:know|see|find out|be told|notice){E}"),
    Rule("stealth", "stealth.multilingual", 0.7,
         B + r"(?:ohne (?:den|die) (?:benutzer|nutzer|anwender)[a-z]* zu (?:informieren|fragen|"
         r"benachrichtigen)|sag(?:e|en sie)? (?:dem|der) (?:benutzer|nutzer)[a-z]* nichts|"
         r"sans (?:en )?(?:informer|prevenir|avertir|le dire a) l'utilisat|"
         r"ne (?:le )?(?:dis|dites) (?:rien )?a l'utilisat|"
         r"sin (?:informar|avisar|decirle|decir) al usuario|no (?:le )?digas (?:nada )?al usuario|"
         r"senza (?:informare|avvisare|dirlo a)(?: l')?(?:utente)?|non dirlo all'utente|"
         r"sem (?:informar|avisar|dizer a)o? usuario|nao (?:conte|diga) (?:nada )?ao usuario)"),
    # -- asking for an action that sends something somewhere (weak on its own)
    Rule("action_request", "action.send_to", 0.25,
         f"{B}(?:send|forward|e-?mail|transfer|wire|pay|upload|share|post|invite|grant|delete|"
         f"remove){WORD}*{gap(8)}(?:to|into|with|at){_S}(?:[a-z0-9.+-]{{1,64}}@[a-z0-9-]{{1,63}}\\."
         f"|https?://|[a-z]{{2}}[0-9]{{2}}[a-z0-9]{{8,}})"),
    Rule("exfil_link", "exfil.instruction", 0.5,
         f"{B}(?:append|add|include|put|encode|insert|embed){WORD}*{gap(6)}(?:to|in|into|as){_S}"
         f"(?:the{_S}|a{_S}|this{_S})?(?:url|link|query|image|markdown){E}"),
    # -- markdown and HTML that make a client fetch a URL (images load by themselves)
    Rule("exfil_link", "exfil.image", 0.0,
         r"!\[[^\]\x00]*\]\(\s{0,4}(https?://[^\s)\x00]+)", link="image"),
    Rule("exfil_link", "exfil.image", 0.0,
         r"<(?:img|image|source|iframe|script)[ \t\n][^>\x00]*(?:src|srcset)\s{0,4}=\s{0,4}"
         r"[\"']?(https?://[^\s\"'>\x00]+)", link="image"),
    Rule("exfil_link", "exfil.link", 0.0,
         r"\[[^\]\x00]*\]\(\s{0,4}(https?://[^\s)\x00]+)", link="link"),
    Rule("exfil_link", "exfil.link", 0.0,
         r"<a[ \t\n][^>\x00]*href\s{0,4}=\s{0,4}[\"']?(https?://[^\s\"'>\x00]+)",
         link="link"),
]  # fmt: skip

RULES: tuple[Rule, ...] = (*_override_rules(), *_RULES_PLAIN)

# Encodings, matched on the original text (where case matters); group 1 is the payload.
BASE64_RUN = r"(?:^|[^A-Za-z0-9+/=_-])([A-Za-z0-9+/_-]{24,}={0,2})"
HEX_RUN = r"(?:^|[^0-9A-Fa-f])((?:[0-9A-Fa-f]{2}){16,})(?:$|[^0-9A-Fa-f])"
PERCENT_ESCAPE = r"%[0-9A-Fa-f]{2}"
HTML_ENTITY = r"&(?:#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6}|[A-Za-z]{2,8});"

# Invisible characters, matched on the original text; group 1 is what to report.
INWORD_ZERO_WIDTH = (
    r"[A-Za-z0-9]([\x{200b}\x{200c}\x{200d}\x{2060}-\x{2064}\x{feff}\x{180e}]+)[A-Za-z0-9]"
)
TAG_RUN = r"(?:^|[^\x{1f3f4}\x{e0000}-\x{e007f}])([\x{e0000}-\x{e007f}]{2,})"
VARIATION_RUN = r"([\x{e0100}-\x{e01ef}\x{fe00}-\x{fe0f}]{8,})"
BIDI_OVERRIDE = r"([\x{202d}\x{202e}])"
BIDI_EMBEDDING = r"([\x{202a}\x{202b}\x{202c}\x{2066}-\x{2069}])"
ANY_INVISIBLE = (
    r"[\x{200b}-\x{200d}\x{2060}-\x{2064}\x{feff}\x{180e}\x{e0000}-\x{e007f}\x{e0100}-\x{e01ef}"
    r"\x{fe00}-\x{fe0f}\x{202a}-\x{202e}\x{2066}-\x{2069}]"
)
