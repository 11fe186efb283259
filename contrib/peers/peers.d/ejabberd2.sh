# peers.d/ejabberd2.sh — the second node of a two-node ejabberd cluster (group
# ejcluster, with ejabberd.sh's node): node ferrytest2@$EJ2_HOST, its own
# config, spool, cookie file and ports (c2s $EJ2_C2S_PORT, components
# $EJ2_COMPONENT_PORT), joined to ferrytest@localhost with
# `ejabberdctl join_cluster` once both run. Accounts, rosters and routes live
# in the shared Mnesia tables: a user of either node reaches a component
# connected to either node; with one ferry instance per node, each node
# routes its users' stanzas to its own instance, and to the other one while
# its own is down (see ejabberd.sh on why not `domain_balancing`).
# Distribution without epmd: ejabberdctl's ERL_DIST_PORT mode makes every node
# listen on, and connect to, that one port, so the second node listens on
# 127.0.0.2 (EJ2_HOST resolves there through both nodes' inetrc).

ejabberd2_packages() { echo ejabberd; }
ejabberd2_ports() { echo "$EJ2_C2S_PORT $EJ2_COMPONENT_PORT"; }

ejabberd2_ctl() { # ARGS... : ejabberdctl against the second node
  local E=$DIR/ejabberd2
  env HOME="$E/spool" setpriv --reuid=ejabberd --regid=ejabberd --init-groups \
    ejabberdctl --config-dir "$E/etc" --spool "$E/spool" --logs "$E/logs" --node "ferrytest2@$EJ2_HOST" "$@"
}

ejabberd2_launch() {
  local E=$DIR/ejabberd2
  mkdir -p "$E/etc" "$E/spool" "$E/logs"
  ejabberd_yml "$EJ2_C2S_PORT" "$EJ2_COMPONENT_PORT" >"$E/etc/ejabberd.yml"
  ejabberd_node_files "$E" 127.0.0.2
  launch ejabberd2 env HOME="$E/spool" setpriv --reuid=ejabberd --regid=ejabberd --init-groups \
    ejabberdctl --config-dir "$E/etc" --spool "$E/spool" --logs "$E/logs" --node "ferrytest2@$EJ2_HOST" foreground
}

ejabberd2_wait() {
  wait_port "$EJ2_C2S_PORT" 60 ejabberd2
  wait_port "$EJ2_COMPONENT_PORT" 10 ejabberd2
}

# joins the first node's cluster (its accounts come with it); join_cluster
# restarts the second node's ejabberd application, so its ports are waited
# for again, then both nodes must list each other as running
ejabberd2_ready() {
  ejabberd2_wait
  ejabberd_wait
  ejabberd2_ctl join_cluster "ferrytest@localhost" >>"$DIR/logs/ejabberd2.log" 2>&1 \
    || die "ejabberd2: join_cluster failed; see $DIR/logs/ejabberd2.log"
  sleep 1
  ejabberd2_wait
  wait_until 30 "ejabberd cluster of two nodes" \
    bash -c "$(declare -f ejabberd2_ctl); DIR='$DIR' EJ2_HOST='$EJ2_HOST'; ejabberd2_ctl list_cluster | grep -q ferrytest@localhost"
}

ejabberd2_pre_stop() { timeout 20 bash -c "$(declare -f ejabberd2_ctl); DIR='$DIR' EJ2_HOST='$EJ2_HOST'; ejabberd2_ctl stop" >/dev/null 2>&1 || true; }

ejabberd2_env() {
  echo "export EJ2_C2S_PORT=$EJ2_C2S_PORT EJ2_COMPONENT_PORT=$EJ2_COMPONENT_PORT"
}
ejabberd2_summary() { echo "ejabberd2 c2s 127.0.0.1:$EJ2_C2S_PORT  components 127.0.0.1:$EJ2_COMPONENT_PORT (node ferrytest2@$EJ2_HOST, joined to ferrytest@localhost)"; }
