complete -c chatd -l tcp -d 'Serve TCP on this port' -r
complete -c chatd -l udp -d 'Serve UDP on this port' -r
complete -c chatd -l http -d 'Serve HTTP on this port (page, /ws, /metrics)' -r
complete -c chatd -l bind -d 'Address to bind the listeners to; repeatable' -r
complete -c chatd -l irc -d 'Serve IRC on this port' -r
complete -c chatd -l irc-password -d 'Password IRC clients must give (PASS)' -r
complete -c chatd -l info-port -d 'Serve the seed\'s info service on this TCP port' -r
complete -c chatd -l allow-origin -d 'Another page origin that may open WebSockets' -r
complete -c chatd -l trusted-proxy -d 'A proxy whose PROXY headers are believed' -r
complete -c chatd -l heartbeat -d 'UDP heartbeat interval' -r
complete -c chatd -l max-clients -d 'Most members at once' -r
complete -c chatd -l max-per-ip -d 'Most members from one IP address' -r
complete -c chatd -l ipv6-prefix -d 'Count IPv6 addresses by this network prefix' -r
complete -c chatd -l max-line -d 'Longest line or datagram, in bytes' -r
complete -c chatd -l rate -d 'Messages per second per member, or `off`' -r
complete -c chatd -l burst -d 'Messages allowed in a burst' -r
complete -c chatd -l flood-kick -d 'Flooding this long gets a member out' -r
complete -c chatd -l sendq -d 'Unsent bytes before a slow reader is cut' -r
complete -c chatd -l coalesce -d 'Gather a busy room\'s lines this long' -r
complete -c chatd -l idle-timeout -d 'Disconnect TCP members silent this long' -r
complete -c chatd -l partial-timeout -d 'Take an unfinished TCP line as sent after this' -r
complete -c chatd -l udp-validate -d 'New UDP addresses send back a short code first' -r -f -a "on\t'Always'
off\t'Never: the first datagram joins (a trusted LAN, clients that cannot answer a code)'
auto\t'On, unless UDP is bound to a loopback address (only this machine can reach it)'"
complete -c chatd -l udp-reply-budget -d 'Most unsolicited UDP replies per second' -r
complete -c chatd -l backlog -d 'Messages a room buffers for its slowest reader' -r
complete -c chatd -l motd -d 'Greeting in the welcome line' -r
complete -c chatd -l history -d 'Chat lines each room replays to joiners' -r
complete -c chatd -l db -d 'Keep history and accounts in this SQLite file' -r -F
complete -c chatd -l max-rooms -d 'Most rooms open at once' -r
complete -c chatd -l max-rooms-per-member -d 'Most rooms one member may be in at once' -r
complete -c chatd -l max-sessions -d 'Most sessions of one account at once' -r
complete -c chatd -l offline-max -d 'Messages kept for each absent account' -r
complete -c chatd -l missed-max -d 'Most missed lines replayed per room on login' -r
complete -c chatd -l max-bans-per-room -d 'Most bans one room holds' -r
complete -c chatd -l announce-max -d 'Largest room that announces joins and leaves' -r
complete -c chatd -l oper -d 'A server operator, with its password hash (NAME=PHC)' -r
complete -c chatd -l argon2-memory -d 'Argon2id memory per password hash, in KiB' -r
complete -c chatd -l argon2-passes -d 'Argon2id passes over that memory' -r
complete -c chatd -l tls -d 'Serve the line protocol over TLS on this port' -r
complete -c chatd -l ircs -d 'Serve IRC over TLS on this port' -r
complete -c chatd -l cert -d 'Certificate chain (PEM, leaf first)' -r -F
complete -c chatd -l key -d 'The certificate\'s private key (PEM)' -r -F
complete -c chatd -l tls-handshake-timeout -d 'Close TLS handshakes not done after this' -r
complete -c chatd -l cluster -d 'Join a cluster through this NATS server' -r
complete -c chatd -l node -d 'This node\'s name in the cluster' -r
complete -c chatd -l cluster-name -d 'The cluster\'s name' -r
complete -c chatd -l cluster-creds -d 'A NATS credentials file (`.creds`)' -r -F
complete -c chatd -l cluster-timeout -d 'Silence after which a node is taken for dead' -r
complete -c chatd -l config -d 'Read settings from this TOML file' -r -F
complete -c chatd -l name -d 'The server\'s name in /info and `chatc scan`' -r
complete -c chatd -l meta -d 'Describe the server in /info (repeatable)' -r
complete -c chatd -l proxy-protocol -d 'Expect PROXY headers from trusted proxies'
complete -c chatd -l echo -d 'Send members their own lines back too'
complete -c chatd -l show-addresses -d 'Name members without a nick by ip:port'
complete -c chatd -l self-signed -d 'Make a throwaway certificate at start'
complete -c chatd -l private-logs -d 'Leave members\' addresses out of the log'
complete -c chatd -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatd -s V -l version -d 'Print version'
