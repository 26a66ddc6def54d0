// TypeScript compiled with "module": "nodenext" to an ES module (esm.spec.js
// compiles it, then runs it): both ways of importing the package type-check
// and work at run time. STICKY_TEST_CONFIG's `imported` picks the way.
import stickyDefault from 'sticky-session-rs'
import { default as sticky, listen, setupMaster, setupWorker, stats, type ListenOptions, type Stats } from 'sticky-session-rs'
import { serve } from '../fixtures/esm/serve.mjs'

const options: ListenOptions = { workers: 2 }
const counters: Stats | null = stats()
void options
void counters

const config: { imported?: string } = JSON.parse(process.env.STICKY_TEST_CONFIG || '{}')
if (config.imported === 'named') {
  await serve({ sticky, listen, setupMaster, setupWorker })
} else {
  await serve({ sticky: stickyDefault, listen: stickyDefault.listen, setupMaster: stickyDefault.setupMaster, setupWorker: stickyDefault.setupWorker })
}
