// One CLI grammar, applied to the whole command tree in one place so no
// command can drift from it: `show` answers to `list` and `ls`, `del` to
// `delete`, `--json` to `-j`. Also the shell completion scripts, generated
// from the same tree.
import type { Command } from 'commander';

const ALIASES: Record<string, string[]> = { show: ['list', 'ls'], del: ['delete'] };

export function applyGrammar(cmd: Command): void {
  for (const sub of cmd.commands) {
    if (sub.name() === 'list') sub.name('show'); // conntrack list was the one `list`
    for (const a of ALIASES[sub.name()] ?? []) if (!sub.aliases().includes(a)) sub.alias(a);
    for (const o of sub.options) {
      if (o.long === '--json' && !o.short) {
        o.short = '-j';
        o.flags = `-j, ${o.flags}`;
      }
    }
    applyGrammar(sub);
  }
}

interface Node { path: string[]; words: string[]; options: string[] }

function nodes(cmd: Command, path: string[] = []): Node[] {
  const words = cmd.commands.flatMap((c) => [c.name(), ...c.aliases()]);
  const options = cmd.options.filter((o) => !o.hidden).flatMap((o) => [o.long, o.short].filter((x): x is string => Boolean(x)));
  return [{ path, words, options }, ...cmd.commands.flatMap((c) => [c.name(), ...c.aliases()].flatMap((n) => nodes(c, [...path, n])))];
}

/** `xdpnet completion bash|zsh`: subcommands and options at every level. */
export function completionScript(program: Command, shell: 'bash' | 'zsh'): string {
  const all = nodes(program);
  const globals = all[0].options;
  const cases = all.map((n) => `    "${n.path.join(' ')}") words="${[...n.words, ...n.options, ...globals].join(' ')}" ;;`).join('\n');
  const fn = `_xdpnet() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" w words i
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    case "$w" in -*) continue ;; esac
    case " $(_xdpnet_words "\${path# }") " in *" $w "*) path="$path $w" ;; esac
  done
  COMPREPLY=($(compgen -W "$(_xdpnet_words "\${path# }")" -- "$cur"))
}
_xdpnet_words() {
  local words=""
  case "$1" in
${cases}
  esac
  echo "$words"
}`;
  if (shell === 'bash') return `# bash completion for xdpnet: eval "$(xdpnet completion bash)"\n${fn}\ncomplete -F _xdpnet xdpnet\n`;
  return `#compdef xdpnet\n# zsh completion for xdpnet: eval "$(xdpnet completion zsh)"\nautoload -U +X bashcompinit && bashcompinit\n${fn}\ncomplete -F _xdpnet xdpnet\n`;
}
