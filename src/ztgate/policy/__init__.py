"""Policy: the organisation's rules in Cedar, evaluated on every call; default deny, forbid wins.

- `schema`: the Cedar schema, generated from the tools' JSON Schemas;
- `arguments`: a call's arguments in the Cedar types the schema gives them;
- `text`: policy files split into policies with their lines, and where errors are;
- `loader`: a directory of `.cedar` files, parsed and validated into one set;
- `references`: which parts of the context the loaded policies read;
- `model`: the records (a loaded set, a call's facts, an evaluation);
- `entities`: a call and its facts as a Cedar request;
- `engine`: one request evaluated against a set: allow, ask or deny, with the reason;
- `live`: the set in force, reloaded atomically when its files or the tools change;
- `status`: what the gateway reports about the set in force and the last reload;
- `check`: the `policy` check;
- `cases`: tables of calls and expected decisions (`ztgate policy test`).

See docs/policy.md.
"""
