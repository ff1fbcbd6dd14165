-- dim_customers consent: contactable = neither withdrawn nor do-not-contact; consent is never
-- "given" by a customer who withdrew it somewhere.
select customer_id, has_marketing_consent, consent_withdrawn, do_not_contact, is_contactable
from {{ ref('dim_customers') }}
where is_contactable <> (not consent_withdrawn and not do_not_contact)
    or (has_marketing_consent and consent_withdrawn)
