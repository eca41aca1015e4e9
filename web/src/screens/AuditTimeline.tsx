export function AuditTimeline() {
  return (
    <section>
      <h1>Audit</h1>
    </section>
  );
}
