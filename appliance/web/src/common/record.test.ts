import { describe, expect, it } from 'vitest';
import { type ClinicalRecord, abnormalMark, timeline } from './record';

const p = { source: 'LIS^X', reference: 'M1', received_at: 1000 };
const lab = (id: number, order: number | null, time: number) => ({
  id, order, code: `C${id}`, name: `N${id}`, value: '1', numeric: 1, unit: '', range: '', low: null,
  high: null, flag: '', abnormal: '', status: 'F', specimen: '', observed_at: time, provenance: p,
});

describe('the record timeline', () => {
  it('groups lab results by order, newest first', () => {
    const r: ClinicalRecord = {
      patient: 1, merged_into: null, encounters: [],
      orders: [{ id: 7, kind: 'lab', placer: 'P', filler: 'F', code: 'BMP', name: '生化', status: '', ordered_at: null, provider: '', provenance: p }],
      labs: [lab(1, 7, 5000), lab(2, 7, 5000), lab(3, null, 9000)],
      exam_reports: [], documents: [],
      diagnoses: [{ id: 1, code: 'I63.9', name: '脑梗死', system: 'I10', kind: 'A', time: 2000, provenance: p }],
    };
    const t = timeline(r);
    expect(t.map((e) => e.kind)).toEqual(['panel', 'panel', 'diagnosis']);
    const panel = t[1];
    if (panel?.kind !== 'panel') throw new Error('a panel second');
    expect(panel.item.name).toBe('生化');
    expect(panel.item.labs.length).toBe(2);
  });

  it('marks high red and low blue with an arrow', () => {
    expect(abnormalMark('H')).toEqual({ arrow: '↑', tone: 'high' });
    expect(abnormalMark('LL')).toEqual({ arrow: '↓↓', tone: 'low' });
    expect(abnormalMark('')).toEqual({ arrow: '', tone: '' });
  });
});
