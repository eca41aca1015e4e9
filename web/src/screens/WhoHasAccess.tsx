export function WhoHasAccess() {
  return (
    <section>
      <h1>Who has access</h1>
    </section>
  );
}
