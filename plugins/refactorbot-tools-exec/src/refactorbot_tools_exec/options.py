"""How each guarded program parses its argv, so a dangerous option is found however it is spelled.

A program reads ``-nO<cmd>`` as ``-n`` then ``-O`` with the value ``<cmd>``, and ``--open=x`` as
``--open-files-in-pager=x`` when the prefix is unique (GNU ``getopt_long`` and git's
parse-options both accept unique prefixes). Matching option names as plain strings misses both.
So each guarded program is described here the way its own parser sees it:

- ``short``: its getopt option string (``x`` a flag, ``x:`` a required value, ``x::`` an optional
  value that must be attached), taken from the installed program (``tests/test_exec_options.py``
  checks the tables against the installed programs' ``--help``/``-h`` and their error messages);
- ``long``: its long options (``name``, ``name=`` required value, ``name=?`` optional value);
- ``abbreviate``: whether unique prefixes of long options are accepted.

``scan`` walks argv like the program would (clusters, attached and separate values, ``--name=v``,
prefixes, ``--`` ending the options) and yields every option it finds under its full name.
Whether an option is allowed is decided on those names, never on the spelling.

Two conservative choices: a long-option prefix that could stand for a dangerous option is
refused even when it is ambiguous (the program would reject it anyway), and every argument that
starts with ``-`` is examined as an option, even one the program would take as a value or an
operand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping


@dataclasses.dataclass(frozen=True)
class Found:
    """One option in argv: its full name (``-O`` or ``--open-files-in-pager``) and how it was written."""

    name: str
    spelled: str
    candidates: tuple[str, ...] = ()  # for an abbreviation: every long option it may stand for


@dataclasses.dataclass(frozen=True)
class Options:
    """The argv grammar of one program (or one git subcommand) and what is refused in it."""

    short: str = ""
    long: str = ""
    abbreviate: bool = True
    #: options that make the program run a command of the caller's choice, or reach outside
    dangerous: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: options that follow symlinks (or read file names from a file): allowed only in the OS sandbox
    follows_links: frozenset[str] = frozenset()
    #: git: ``--no-<name>`` negates an option
    negate: bool = False
    #: tar: a first argument without '-' is a cluster of options whose values are the next arguments
    old_style: bool = False

    @property
    def shorts(self) -> dict[str, str]:
        """Return each short option letter with ``none``, ``required`` or ``optional``."""
        return _parse_short(self.short)

    @property
    def longs(self) -> dict[str, str]:
        """Return each long option name with ``none``, ``required`` or ``optional``."""
        return _parse_long(self.long)


def _parse_short(spec: str) -> dict[str, str]:
    result: dict[str, str] = {}
    index = 0
    while index < len(spec):
        letter = spec[index]
        index += 1
        kind = "none"
        if spec[index : index + 2] == "::":
            kind, index = "optional", index + 2
        elif spec[index : index + 1] == ":":
            kind, index = "required", index + 1
        result[letter] = kind
    return result


def _parse_long(spec: str) -> dict[str, str]:
    # The first mention wins: a command's own options come before the shared diff/revision ones.
    result: dict[str, str] = {}
    for word in spec.split():
        if word.endswith("=?"):
            result.setdefault(word[:-2], "optional")
        elif word.endswith("="):
            result.setdefault(word[:-1], "required")
        else:
            result.setdefault(word, "none")
    return result


def scan(options: Options, args: list[str]) -> Iterator[Found]:
    """Yield every option in ``args`` the way the program would read it."""
    shorts, longs = options.shorts, options.longs
    pending = 0  # separate values still owed to old-style (tar) options
    for index, arg in enumerate(args):
        if index == 0 and options.old_style and arg and not arg.startswith("-"):
            for letter in arg:
                yield Found(f"-{letter}", arg)
                if shorts.get(letter) == "required":
                    pending += 1
            continue
        if pending:
            pending -= 1
            if not arg.startswith("-"):
                continue
        if arg == "--":
            return
        if arg.startswith("--"):
            yield _long(options, longs, arg)
        elif arg.startswith("-") and len(arg) > 1:
            yield from _cluster(shorts, arg)


def _long(options: Options, longs: dict[str, str], arg: str) -> Found:
    name = arg[2:].split("=", 1)[0]
    if name in longs:
        return Found(f"--{name}", arg)
    if options.negate and name.startswith("no-") and name[3:] in longs:
        return Found(f"--{name}", arg)
    if not options.abbreviate or not name:
        return Found(f"--{name}", arg)
    names = list(longs)
    if options.negate:
        names += [f"no-{n}" for n in longs]
    candidates = tuple(f"--{n}" for n in names if n.startswith(name))
    if len(candidates) == 1:
        return Found(candidates[0], arg, candidates)
    return Found(f"--{name}", arg, candidates)


def _cluster(shorts: dict[str, str], arg: str) -> Iterator[Found]:
    # getopt: letters are flags until one takes a value; the rest of the word is that value.
    for pos in range(1, len(arg)):
        letter = arg[pos]
        yield Found(f"-{letter}", arg)
        if shorts.get(letter, "none") != "none":
            return


def dangerous_in(options: Options, found: Found) -> str | None:
    """Return the dangerous option ``found`` is (or may stand for), or None."""
    for name in (found.name, *found.candidates):
        if name in options.dangerous:
            return name
    if found.name.startswith("--") and options.abbreviate and found.name[2:] not in options.longs:
        # a prefix the tables do not resolve (ambiguous): refused if it could mean a dangerous option
        prefix = found.name
        for name in options.dangerous:
            if name.startswith("--") and name.startswith(prefix) and len(prefix) > 2:
                return name
    return None


def follows_links_in(options: Options, found: Found) -> str | None:
    """Return the symlink-following option ``found`` is (or may stand for), or None."""
    for name in (found.name, *found.candidates):
        if name in options.follows_links:
            return name
    if found.name.startswith("--") and options.abbreviate and found.name[2:] not in options.longs:
        for name in options.follows_links:
            if name.startswith("--") and name.startswith(found.name) and len(found.name) > 2:
                return name
    return None


# -- the tables ---------------------------------------------------------------------------------
#
# Taken from the installed programs on Debian 12 (GNU grep 3.8, sed 4.9, tar 1.34, coreutils 9.1,
# diffutils 3.8, findutils 4.9, git 2.39, ripgrep 13) and their documentation for later versions.

_RUNS = "runs a command of the caller's choice"
_WRITES_OUT = "lets the program reach outside the workspace"

GREP = Options(
    short="abcd:e:f:hilm:noqrsuvwxyzA:B:C:D:EFGHILPRTUVX:Z0123456789",
    long=(
        "after-context= basic-regexp before-context= binary binary-files= byte-offset color=? colour=? context= "
        "count dereference-recursive devices= directories= exclude= exclude-dir= exclude-from= extended-regexp "
        "file= files-with-matches files-without-match fixed-strings group-separator= help ignore-case include= "
        "initial-tab invert-match label= line-buffered line-number line-regexp max-count= no-filename "
        "no-group-separator no-ignore-case no-messages null null-data only-matching perl-regexp quiet recursive "
        "regexp= silent text version with-filename word-regexp"
    ),
    follows_links=frozenset({"-R", "--dereference-recursive"}),
)

RG = Options(
    short="A:B:C:E:M:T:e:f:g:j:m:r:t:d:abcFhHiIlLnNopPqsSuUvVwxz0.",
    long=(
        "after-context= auto-hybrid-regex before-context= binary block-buffered byte-offset case-sensitive "
        "color= colors= column context= context-separator= count count-matches crlf debug dfa-size-limit= "
        "encoding= engine= field-context-separator= field-match-separator= file= files files-with-matches "
        "files-without-match fixed-strings follow glob= glob-case-insensitive help heading hidden iglob= "
        "ignore-case ignore-file= ignore-file-case-insensitive include-zero invert-match json line-buffered "
        "line-number line-regexp max-columns= max-columns-preview max-count= max-depth= max-filesize= mmap "
        "multiline multiline-dotall no-config no-filename no-heading no-ignore no-ignore-dot no-ignore-exclude "
        "no-ignore-files no-ignore-global no-ignore-messages no-ignore-parent no-ignore-vcs no-line-number "
        "no-messages no-mmap no-pcre2-unicode no-require-git no-unicode null null-data one-file-system "
        "only-matching passthru path-separator= pcre2 pcre2-version pre= pre-glob= pretty quiet "
        "regex-size-limit= regexp= replace= search-zip smart-case sort= sortr= stats text threads= trim type= "
        "type-add= type-clear= type-list type-not= unrestricted version vimgrep with-filename word-regexp "
        "hostname-bin= hyperlink-format= no-follow"
    ),
    abbreviate=False,  # ripgrep's parser takes long options only in full
    dangerous={"--pre": _RUNS, "--hostname-bin": _RUNS},
    follows_links=frozenset({"-L", "--follow"}),
)

SED = Options(
    short="be:f:i::l:nrsuzEV:",
    long=(
        "debug expression= file= follow-symlinks help in-place=? line-length= null-data posix quiet "
        "regexp-extended sandbox separate silent unbuffered version zero-terminated binary"
    ),
    follows_links=frozenset({"--follow-symlinks"}),
)

TAR = Options(
    short="ab:cdf:g:hijklmnoprstuvwxzABC:F:GH:I:JK:L:MN:OPRST:UV:WX:Z0123456789",
    long=(
        "absolute-names acls add-file= after-date= anchored append atime-preserve=? auto-compress backup=? "
        "block-number blocking-factor= bzip2 catenate check-device check-links checkpoint=? checkpoint-action= "
        "clamp-mtime compare compress concatenate confirmation create delay-directory-restore delete "
        "dereference diff directory= exclude= exclude-backups exclude-caches exclude-caches-all "
        "exclude-caches-under exclude-from= exclude-ignore= exclude-ignore-recursive= exclude-tag= "
        "exclude-tag-all= exclude-tag-under= exclude-vcs exclude-vcs-ignores extract file= files-from= "
        "force-local format= full-time get group= group-map= gunzip gzip hard-dereference help "
        "hole-detection= ignore-case ignore-command-error ignore-failed-read ignore-zeros incremental "
        "index-file= info-script= interactive keep-directory-symlink keep-newer-files keep-old-files label= "
        "level= list listed-incremental= lzip lzma lzop mode= mtime= multi-volume new-volume-script= newer= "
        "newer-mtime= no-acls no-anchored no-auto-compress no-check-device no-delay-directory-restore "
        "no-ignore-case no-ignore-command-error no-null no-overwrite-dir no-quote-chars= no-recursion "
        "no-same-owner no-same-permissions no-seek no-selinux no-unquote no-verbatim-files-from no-wildcards "
        "no-wildcards-match-slash no-xattrs null numeric-owner occurrence=? old-archive one-file-system "
        "one-top-level=? overwrite overwrite-dir owner= owner-map= pax-option= portability posix "
        "preserve-order preserve-permissions quote-chars= quoting-style= read-full-records record-size= "
        "recursion recursive-unlink remove-files restrict rmt-command= rsh-command= same-order same-owner "
        "same-permissions seek selinux show-defaults show-omitted-dirs show-snapshot-field-ranges "
        "show-stored-names show-transformed-names skip-old-files sort= sparse sparse-version= starting-file= "
        "strip-components= suffix= tape-length= test-label to-command= to-stdout totals=? touch transform= "
        "uncompress ungzip unlink-first unquote update usage use-compress-program= utc verbatim-files-from "
        "verbose verify version volno-file= warning= wildcards wildcards-match-slash xattrs xattrs-exclude= "
        "xattrs-include= xform= xz zstd"
    ),
    old_style=True,
    dangerous={
        "--to-command": _RUNS,
        "--checkpoint-action": _RUNS,
        "-I": _RUNS,
        "--use-compress-program": _RUNS,
        "--rsh-command": _RUNS,
        "--rmt-command": _RUNS,
        "-F": _RUNS,
        "--info-script": _RUNS,
        "--new-volume-script": _RUNS,
        "-P": "keeps absolute and '..' member names, which writes outside the workspace",
        "--absolute-names": "keeps absolute and '..' member names, which writes outside the workspace",
    },
    follows_links=frozenset({"-h", "--dereference", "--hard-dereference", "-T", "--files-from"}),
)

LS = Options(
    short="abcdfghiklmnopqrstuvw:xABCDFGHI:LNQRST:UXZ1",
    long=(
        "all almost-all author block-size= classify=? color=? context dereference dereference-command-line "
        "dereference-command-line-symlink-to-dir directory dired escape file-type format= full-time "
        "group-directories-first help hide= hide-control-chars human-readable hyperlink=? ignore= ignore-backups "
        "indicator-style= inode kibibytes literal no-group numeric-uid-gid quote-name quoting-style= recursive "
        "reverse show-control-chars si size sort= tabsize= time= time-style= version width= zero"
    ),
    follows_links=frozenset({"-L", "--dereference"}),
)

CP = Options(
    short="abdfilnprst:uvxHLPRS:TZ",
    long=(
        "archive attributes-only backup=? context=? copy-contents dereference force help interactive link "
        "no-clobber no-dereference no-preserve= no-target-directory one-file-system parents preserve=? "
        "recursive reflink=? remove-destination sparse= strip-trailing-slashes suffix= symbolic-link "
        "target-directory= update verbose version"
    ),
    follows_links=frozenset({"-L", "--dereference"}),
)

DU = Options(
    short="abcd:hklmst:xB:DHLPSX:0",
    long=(
        "all apparent-size block-size= bytes count-links dereference dereference-args exclude= exclude-from= "
        "files0-from= help human-readable inodes max-depth= no-dereference null one-file-system separate-dirs "
        "si summarize threshold= time=? time-style= total version"
    ),
    follows_links=frozenset({"-L", "--dereference", "--files0-from"}),
)

WC = Options(
    short="clmwL",
    long="bytes chars files0-from= help lines max-line-length version words total=",
    follows_links=frozenset({"--files0-from"}),
)

SORT = Options(
    short="bcdfghik:mno:rst:uy:zCMRS:T:V",
    long=(
        "batch-size= buffer-size= check=? compress-program= debug dictionary-order field-separator= "
        "files0-from= general-numeric-sort help human-numeric-sort ignore-case ignore-leading-blanks "
        "ignore-nonprinting key= merge month-sort numeric-sort output= parallel= random-sort random-source= "
        "reverse sort= stable temporary-directory= unique version version-sort zero-terminated"
    ),
    dangerous={"--compress-program": _RUNS},
    follows_links=frozenset({"--files0-from"}),
)

DIFF = Options(
    short="abcdefhilnpqrstuvwx:yBC:D:EF:HI:L:NPS:TU:W:X:Z0123456789",
    long=(
        "brief color=? context=? ed exclude= exclude-from= expand-tabs from-file= help horizon-lines= ifdef= "
        "ignore-all-space ignore-blank-lines ignore-case ignore-file-name-case ignore-matching-lines= "
        "ignore-space-change ignore-tab-expansion ignore-trailing-space initial-tab label= left-column "
        "line-format= minimal new-file no-dereference no-ignore-file-name-case normal paginate palette= rcs "
        "recursive report-identical-files show-c-function show-function-line= side-by-side speed-large-files "
        "starting-file= strip-trailing-cr suppress-blank-empty suppress-common-lines tabsize= text to-file= "
        "unidirectional-new-file unified=? version width= old-group-format= new-group-format= "
        "unchanged-group-format= changed-group-format= old-line-format= new-line-format= unchanged-line-format="
    ),
)

#: find: options and primaries are whole words (no clusters, no prefixes).
FIND_DANGEROUS = {
    "-exec": _RUNS,
    "-execdir": _RUNS,
    "-ok": _RUNS,
    "-okdir": _RUNS,
    "-delete": "deletes files",
    "-fprint": "writes a file",
    "-fprint0": "writes a file",
    "-fprintf": "writes a file",
    "-fls": "writes a file",
}
FIND_FOLLOWS = frozenset({"-L", "-follow", "-files0-from"})

# -- git ------------------------------------------------------------------------------------------

#: Dangerous in every git subcommand (parse-options accepts unique prefixes, and --no-<name>).
GIT_DANGEROUS = {
    "--ext-diff": "runs an external diff program",
    "--textconv": "runs textconv filter commands",
    "--recurse-submodules": "works in submodules, whose configuration is not isolated",
    "--open-files-in-pager": "runs a pager command",
    "--unsafe-paths": "lets git apply write outside the work tree",
    "--help": "opens the manual with a viewer or browser the configuration may name",
    "--exec": _RUNS,
    "--exec-path": _RUNS,
    "--upload-pack": _RUNS,
    "--receive-pack": _RUNS,
}

#: Options of the diff/log-family commands (diff.c and revision.c), which ``-h`` of log and show
#: does not list.
_DIFF_LONG = (  # git diff -h (outside a repository, git 2.39 lists every diff option)
    "abbrev=? anchored= binary break-rewrites=? check color=? color-moved=? color-moved-ws= color-words=? "
    "compact-summary cumulative diff-algorithm= diff-filter= dirstat=? dirstat-by-file=? dst-prefix= exit-code "
    "ext-diff find-copies=? find-copies-harder find-object= find-renames=? follow full-index function-context "
    "histogram ignore-all-space ignore-blank-lines ignore-cr-at-eol ignore-matching-lines= ignore-space-at-eol "
    "ignore-space-change ignore-submodules=? indent-heuristic inter-hunk-context= irreversible-delete "
    "ita-invisible-in-index ita-visible-in-index line-prefix= minimal name-only name-status no-patch no-prefix "
    "no-renames numstat output= output-indicator-context= output-indicator-new= output-indicator-old= patch "
    "patch-with-raw patch-with-stat patience pickaxe-all pickaxe-regex quiet raw relative=? rename-empty "
    "rotate-to= shortstat skip-to= src-prefix= stat=? stat-count= stat-graph-width= stat-name-width= "
    "stat-width= submodule=? summary text textconv unified=? word-diff=? word-diff-regex= ws-error-highlight= "
    "no-index cached staged merge-base base ours theirs"
)
_DIFF_SHORT = "psuU::WX::zB::M::DC::l:wbI:aRS:G:O:123"
_REV_LONG = (
    "all all-match author= after= ancestry-path=? before= bisect boundary branches=? cherry cherry-mark "
    "cherry-pick children committer= date= decorate=? dense encoding= exclude= extended-regexp first-parent "
    "fixed-strings follow format= full-diff full-history glob= graph grep= grep-reflog= ignore-missing "
    "invert-grep left-only left-right log-size max-age= max-count= max-parents= merges min-age= min-parents= "
    "no-merges no-walk=? notes=? oneline parents perl-regexp pretty=? regexp-ignore-case relative-date "
    "remotes=? reverse right-only show-linear-break=? show-notes=? show-pulls show-signature simplify-by-decoration "
    "simplify-merges since= skip= source sparse stdin tags=? topo-order date-order author-date-order until= "
    "use-mailmap mailmap walk-reflogs abbrev-commit no-abbrev-commit expand-tabs=? no-expand-tabs "
    "basic-regexp quiet clear-decorations decorate-refs= decorate-refs-exclude= no-decorate name-only"
)

# From ``git <subcommand> -h`` of git 2.39 (parse-options), checked by the tests.
_GIT_SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "add": (
        "nvipefuNA",
        "all chmod= dry-run edit force ignore-errors ignore-missing ignore-removal intent-to-add interactive "
        "patch pathspec-file-nul pathspec-from-file= refresh renormalize sparse update verbose",
    ),
    "apply": (
        "p:N3zC:Rvq",
        "3way allow-empty allow-overlap apply build-fake-ancestor= cached check directory= exclude= "
        "ignore-space-change ignore-whitespace inaccurate-eof include= index intent-to-add no-add numstat quiet "
        "recount reject reverse stat summary unidiff-zero unsafe-paths verbose whitespace=",
    ),
    "blame": (
        "bfnpctlsewS:C::M::L:",
        "abbrev=? color-by-age color-lines contents= ignore-rev= ignore-revs-file= incremental line-porcelain "
        "minimal porcelain progress root score-debug show-email show-name show-number show-stats " + _REV_LONG,
    ),
    "branch": (
        "vqt::u:radDmMcClfi",
        "abbrev=? all color=? column=? contains= copy create-reflog delete edit-description force format= "
        "ignore-case list merged= move no-contains= no-merged= points-at= quiet recurse-submodules remotes "
        "set-upstream-to= show-current sort= track=? unset-upstream verbose",
    ),
    "cat-file": (
        "eptsz",
        "allow-unknown-type batch=? batch-all-objects batch-check=? batch-command=? buffer filters "
        "follow-symlinks mailmap path= textconv unordered use-mailmap",
    ),
    "checkout": (
        "b:B:lqmdt::f23p",
        "conflict= detach force guess ignore-other-worktrees ignore-skip-worktree-bits merge orphan= ours "
        "overlay overwrite-ignore patch pathspec-file-nul pathspec-from-file= progress quiet recurse-submodules=? "
        "theirs track=?",
    ),
    "cherry-pick": (
        "nesm:X:S::x",
        "abort allow-empty allow-empty-message cleanup= continue edit ff gpg-sign=? keep-redundant-commits "
        "mainline= no-commit quit rerere-autoupdate signoff skip strategy= strategy-option=",
    ),
    "commit": (
        "qvF:m:c:C:st:eS::aiponzu::",
        "ahead-behind all amend author= branch cleanup= date= dry-run edit file= fixup= gpg-sign=? include "
        "interactive long message= no-post-rewrite no-verify null only patch pathspec-file-nul "
        "pathspec-from-file= porcelain quiet reedit-message= reset-author reuse-message= short signoff squash= "
        "status template= trailer= untracked-files=? verbose",
    ),
    "describe": (
        "",
        "abbrev=? all always broken=? candidates= contains debug dirty=? exact-match exclude= first-parent long "
        "match= tags",
    ),
    "diff": (_DIFF_SHORT, _DIFF_LONG),
    "grep": (
        "viwaIrEGFPnhHlLzocC:B:A:pWf:e:qO::m:0123456789",
        "after-context= all-match and basic-regexp before-context= break cached color=? column context= count "
        "exclude-standard ext-grep extended-regexp files-with-matches files-without-match fixed-strings "
        "full-name function-context heading ignore-case invert-match line-number max-count= max-depth= "
        "name-only no-index not null only-matching open-files-in-pager=? or perl-regexp quiet "
        "recurse-submodules recursive show-function text textconv threads= untracked word-regexp",
    ),
    "init": ("qb:", "bare initial-branch= object-format= quiet separate-git-dir= shared=? template="),
    "log": ("qL:n:gimctrEFP" + _DIFF_SHORT, _DIFF_LONG + " " + _REV_LONG),
    "ls-files": (
        "ztvfcdmoiskux:X:",
        "abbrev=? cached debug deduplicate deleted directory empty-directory eol error-unmatch exclude= "
        "exclude-from= exclude-per-directory= exclude-standard format= full-name ignored killed modified others "
        "recurse-submodules resolve-undo sparse stage unmerged with-tree=",
    ),
    "ls-tree": ("drtzl", "abbrev=? format= full-name full-tree long name-only name-status object-only"),
    "merge": (
        "nes:X:m:F:vqS::",
        "abort allow-unrelated-histories autostash cleanup= commit continue edit ff ff-only file= gpg-sign=? "
        "into-name= log=? message= no-verify overwrite-ignore progress quiet quit rerere-autoupdate signoff "
        "squash stat strategy= strategy-option= summary verbose verify-signatures",
    ),
    "mv": ("vnfk", "dry-run force sparse verbose"),
    "reset": (
        "qpN",
        "hard intent-to-add keep merge mixed no-refresh patch pathspec-file-nul pathspec-from-file= quiet "
        "recurse-submodules=? soft",
    ),
    "restore": (
        "s:SWqm23p",
        "conflict= ignore-skip-worktree-bits ignore-unmerged merge ours overlay patch pathspec-file-nul "
        "pathspec-from-file= progress quiet recurse-submodules=? source= staged theirs worktree",
    ),
    "rev-parse": (
        "q",
        "abbrev-ref=? absolute-git-dir all branches=? disambiguate= default= exclude= flags git-common-dir "
        "git-dir git-path= glob= is-bare-repository is-inside-git-dir is-inside-work-tree is-shallow-repository "
        "local-env-vars no-flags no-revs not prefix= quiet remotes=? resolve-git-dir= revs-only "
        "shared-index-path short=? show-cdup show-object-format=? show-prefix show-ref-format "
        "show-superproject-working-tree show-toplevel since= sq sq-quote symbolic symbolic-full-name tags=? "
        "until= verify after= before= keep-dashdash stop-at-non-option stuck-long parseopt path-format=",
    ),
    "rm": ("nqfr", "cached dry-run force ignore-unmatch pathspec-file-nul pathspec-from-file= quiet sparse"),
    "shortlog": ("cnsew::", "committer email group= numbered summary " + _REV_LONG),
    "show": ("qL:n:gimctrEFP" + _DIFF_SHORT, _DIFF_LONG + " " + _REV_LONG),
    "stash": (
        "pSkqualm:",
        "patch staged keep-index quiet include-untracked only-untracked all message= index "
        "pathspec-from-file= pathspec-file-nul " + _DIFF_LONG,
    ),
    "status": (
        "vsbzu::M::",
        "ahead-behind branch column=? find-renames=? ignore-submodules=? ignored=? long no-renames null "
        "porcelain=? short show-stash untracked-files=? verbose",
    ),
    "switch": (
        "c:C:qmdt::f",
        "conflict= create= detach discard-changes force force-create= guess ignore-other-worktrees merge "
        "orphan= overwrite-ignore progress quiet recurse-submodules=? track=?",
    ),
    "tag": (
        "ln::dvam:F:esu:fi",
        "annotate cleanup= color=? column=? contains= create-reflog delete edit file= force format= ignore-case "
        "list local-user= merged= message= no-contains= no-merged= points-at= sign sort= verify",
    ),
}

#: ``git grep -O`` is the only dangerous short option among the allowed subcommands.
_GIT_SHORT_DANGEROUS = {"grep": {"-O": "runs a pager command"}}

GIT: dict[str, Options] = {
    sub: Options(
        short=short,
        long=long,
        negate=True,
        dangerous={**GIT_DANGEROUS, **_GIT_SHORT_DANGEROUS.get(sub, {})},
    )
    for sub, (short, long) in _GIT_SUBCOMMANDS.items()
}
#: The subcommands exec_run allows.
GIT_SUBCOMMANDS = frozenset(GIT)

#: The guarded programs by name (git, find, python and awk have their own checks in policy.py).
PROGRAMS: dict[str, Options] = {
    "grep": GREP,
    "egrep": GREP,
    "fgrep": GREP,
    "rgrep": GREP,
    "rg": RG,
    "sed": SED,
    "tar": TAR,
    "ls": LS,
    "cp": CP,
    "du": DU,
    "wc": WC,
    "sort": SORT,
    "diff": DIFF,
}
