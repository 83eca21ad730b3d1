# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_chatc_global_optspecs
    string join \n udp tls ca= insecure nick= heartbeat= max-line= color= h/help V/version
end

function __fish_chatc_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_chatc_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_chatc_using_subcommand
    set -l cmd (__fish_chatc_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c chatc -n "__fish_chatc_needs_command" -l ca -d 'With --tls: trust only the CA certificates in this PEM file (a private CA, or a server\'s own self-signed certificate)' -r -F
complete -c chatc -n "__fish_chatc_needs_command" -l nick -d 'Name to take on join' -r
complete -c chatc -n "__fish_chatc_needs_command" -l heartbeat -d 'UDP heartbeat interval, e.g. 5s or 300ms (100ms to 1h)' -r
complete -c chatc -n "__fish_chatc_needs_command" -l max-line -d 'Longest input line sent, in bytes (1 to 65000); longer lines are skipped with a notice' -r
complete -c chatc -n "__fish_chatc_needs_command" -l color -d 'Colour names and notices: `auto` (when stdout is a terminal and NO_COLOR is not set), `always` or `never`' -r -f -a "never\t'Never'
auto\t'When stdout is a terminal and `NO_COLOR` is not set'
always\t'Always, even into a pipe'"
complete -c chatc -n "__fish_chatc_needs_command" -l udp -d 'Speak UDP instead of TCP'
complete -c chatc -n "__fish_chatc_needs_command" -l tls -d 'Speak TLS over TCP (a server\'s `--tls` port), checking its certificate against the system\'s trust store'
complete -c chatc -n "__fish_chatc_needs_command" -l insecure -d 'With --tls: do not check the certificate at all (a `--self-signed` server in development). Anyone on the path could read and change the chat'
complete -c chatc -n "__fish_chatc_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatc -n "__fish_chatc_needs_command" -s V -l version -d 'Print version'
complete -c chatc -n "__fish_chatc_needs_command" -a "scan" -d 'Find chatd servers: ask every target for its server info and list those that answer'
complete -c chatc -n "__fish_chatc_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatc -n "__fish_chatc_using_subcommand scan" -l port -d 'Port for targets that do not give one' -r
complete -c chatc -n "__fish_chatc_using_subcommand scan" -l timeout -d 'How long each target has to answer (10ms to 1m)' -r
complete -c chatc -n "__fish_chatc_using_subcommand scan" -l concurrency -d 'Most targets asked at once (1 to 4096)' -r
complete -c chatc -n "__fish_chatc_using_subcommand scan" -l similar -d 'Also name the two servers most alike in these numeric meta fields (comma-separated)' -r
complete -c chatc -n "__fish_chatc_using_subcommand scan" -l udp -d 'Ask over UDP (`#info#`, without joining) instead of TCP (`/info`)'
complete -c chatc -n "__fish_chatc_using_subcommand scan" -l json -d 'Print one JSON object per answering server, one per line, instead of a table'
complete -c chatc -n "__fish_chatc_using_subcommand scan" -s h -l help -d 'Print help'
complete -c chatc -n "__fish_chatc_using_subcommand scan" -s V -l version -d 'Print version'
complete -c chatc -n "__fish_chatc_using_subcommand help; and not __fish_seen_subcommand_from scan help" -f -a "scan" -d 'Find chatd servers: ask every target for its server info and list those that answer'
complete -c chatc -n "__fish_chatc_using_subcommand help; and not __fish_seen_subcommand_from scan help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
