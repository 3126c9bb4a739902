#!/usr/bin/env bash
# Make sure a local RabbitMQ accepts AMQP on 127.0.0.1:5672 and has the vhosts we need.
# Installs Debian's rabbitmq-server when run as root and it is missing; starts the node or
# its application when stopped; otherwise says in one line what to do.
set -euo pipefail
vhosts=("$@")
say() { echo "broker: $*" >&2; }

if ! command -v rabbitmqctl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "RabbitMQ is not installed; installing Debian's rabbitmq-server"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
  else
    say "RabbitMQ is not installed; run: sudo apt-get install rabbitmq-server"
    exit 1
  fi
fi

amqp_open() { timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672' 2>/dev/null; }
app_running() { timeout 20 rabbitmq-diagnostics -q check_running >/dev/null 2>&1; }
node_up() { timeout 20 rabbitmq-diagnostics -q ping >/dev/null 2>&1; }

if ! app_running; then
  if node_up; then
    say "RabbitMQ's node is up but its application is stopped; starting it (rabbitmqctl start_app)"
    timeout 60 rabbitmqctl -q start_app >/dev/null
  else
    say "RabbitMQ is not running; starting it (rabbitmq-server -detached)"
    if ! rabbitmq-server -detached >/dev/null 2>&1; then
      say "could not start RabbitMQ; start it yourself (rabbitmq-server -detached or systemctl start rabbitmq-server)"
      exit 1
    fi
  fi
fi
deadline=$((SECONDS + 90))
until app_running && amqp_open; do
  if [ $SECONDS -ge $deadline ]; then
    say "RabbitMQ does not accept AMQP on 127.0.0.1:5672 after 90 s; see /var/log/rabbitmq/"
    exit 1
  fi
  sleep 1
done

existing=$(timeout 30 rabbitmqctl -q list_vhosts name 2>/dev/null || true)
for vhost in "${vhosts[@]}"; do
  if ! grep -qx -- "$vhost" <<<"$existing"; then
    timeout 30 rabbitmqctl -q add_vhost "$vhost" >/dev/null
  fi
  timeout 30 rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
done
