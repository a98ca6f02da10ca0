// The signed-in user's unread notifications, pushed over the appliance's WebSocket
// (/api/v1/notifications/ws): the unread list on connect, then each new one as it is made.
// A dropped socket reconnects by itself (backing off to 30 s); the server closing it with
// 4001 means the session ended, and the store stops. State lives here (Pinia).
import { defineStore } from 'pinia';
import { computed, ref } from 'vue';
import { api, sessionToken } from './api/client';
import type { paths } from './api/schema';

export type Notification =
  paths['/api/v1/notifications']['get']['responses']['200']['content']['application/json']['unread'][number];

/** Where a notification's object ("会诊 12", "转诊 4") is opened: its kind and id. */
export function caseOf(object: string): { kind: 'consultation' | 'referral'; id: number } | null {
  const m = /^(会诊|转诊)\s*(\d+)$/.exec(object.trim());
  if (!m) return null;
  return { kind: m[1] === '会诊' ? 'consultation' : 'referral', id: Number(m[2]) };
}

export const useNotifications = defineStore('notifications', () => {
  const items = ref<Notification[]>([]);
  const connected = ref(false);
  const unread = computed(() => items.value.length);
  let socket: WebSocket | null = null;
  let retry = 1000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let wanted = false;

  function connect(): void {
    const token = sessionToken();
    if (!wanted || !token || socket) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(
      `${scheme}://${location.host}/api/v1/notifications/ws?token=${encodeURIComponent(token)}`,
    );
    socket = ws;
    ws.onopen = () => {
      connected.value = true;
      retry = 1000;
    };
    ws.onmessage = (e: MessageEvent<string>) => {
      const m = JSON.parse(e.data) as { type: string; items?: Notification[] } & Notification;
      if (m.type === 'unread') items.value = m.items ?? [];
      else if (m.type === 'notification' && !items.value.some((n) => n.id === m.id)) {
        items.value = [
          { id: m.id, event: m.event, object: m.object, message: m.message, at: m.at },
          ...items.value,
        ];
      }
    };
    ws.onclose = (e) => {
      socket = null;
      connected.value = false;
      if (e.code === 4001 || !wanted) return;
      timer = setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30_000);
    };
  }

  /** Starts listening (after login). */
  function start(): void {
    wanted = true;
    connect();
  }

  /** Stops listening and forgets (logout). */
  function stop(): void {
    wanted = false;
    clearTimeout(timer);
    socket?.close();
    socket = null;
    items.value = [];
  }

  async function markRead(id: number): Promise<void> {
    const { response } = await api.POST('/api/v1/notifications/{id}/read', {
      params: { path: { id } },
    });
    if (response.ok || response.status === 404) items.value = items.value.filter((n) => n.id !== id);
  }

  return { items, unread, connected, start, stop, markRead };
});
