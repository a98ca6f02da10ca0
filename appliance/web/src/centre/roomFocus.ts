// The consultation room's shared focus for one page: a WebSocket to the appliance
// (/api/v1/consultations/{id}/focus/ws) that brings the current focus on connect and each
// change after; a drop shows "reconnecting" and reconnects by itself (backing off to 10 s),
// coming back in place with the focus as it is now. Closing 4001 means the session ended.
import { onBeforeUnmount, ref } from 'vue';
import { sessionToken } from '@/common/api/client';

export interface Focus {
  panel: string;
  detail: string;
  by: string;
  at: number;
}

export type Link = 'connecting' | 'live' | 'reconnecting' | 'ended';

export function useRoomFocus(id: number) {
  const focus = ref<Focus | null>(null);
  const controls = ref(false);
  const link = ref<Link>('connecting');
  /** Whether the link has dropped at least once (the page says when it is back). */
  const rejoined = ref(false);
  let socket: WebSocket | null = null;
  let retry = 500;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;

  function connect(): void {
    const token = sessionToken();
    if (stopped || !token) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(
      `${scheme}://${location.host}/api/v1/consultations/${id}/focus/ws?token=${encodeURIComponent(token)}`,
    );
    socket = ws;
    ws.onmessage = (e: MessageEvent<string>) => {
      const m = JSON.parse(e.data) as { type: string; focus?: Focus | null; controls?: boolean };
      if (m.type !== 'focus') return;
      if (m.controls !== undefined) {
        controls.value = m.controls;
        if (link.value === 'reconnecting') rejoined.value = true;
        link.value = 'live';
        retry = 500;
      }
      focus.value = m.focus ?? null;
    };
    ws.onclose = (e) => {
      socket = null;
      if (stopped) return;
      if (e.code === 4001) {
        link.value = 'ended';
        return;
      }
      link.value = 'reconnecting';
      timer = setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10_000);
    };
  }

  /** Shows `panel` (and what in it) to everyone in the room; only controllers may. */
  function lead(panel: string, detail = ''): void {
    if (controls.value && socket?.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ panel, detail }));
    }
  }

  connect();
  onBeforeUnmount(() => {
    stopped = true;
    clearTimeout(timer);
    socket?.close();
  });
  return { focus, controls, link, rejoined, lead };
}
